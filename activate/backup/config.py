"""The backup plan (scripts/backup.json, made by `bundle build`) and the secrets it names.

JSON is read with the switcher's checks (activate/strict_json.py); a refusal is one Failed
line, as every other problem of a backup is.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import strict_json
from ..errors import Failed

LISTING_LIMIT = 1 << 30  # a tool's snapshot list of a big repository may pass the default


@dataclass(frozen=True)
class Setup:
    """The plan a run follows, the file it came from, and where this process runs."""

    cfg: dict[str, Any]
    path: Path
    inside: bool = False  # this process runs inside the user namespace (a rootless host)

    @property
    def rootless(self) -> bool:
        return bool(self.cfg.get("rootless"))


def parse_json(text: str | bytes, what: str, expect: type | tuple[type, ...] = dict) -> Any:
    """Plain JSON of the `expect`ed type, or Failed in one line (activate/strict_json.py)."""
    try:
        found = strict_json.loads(text, what, "", expect=None, limit=LISTING_LIMIT)
    except strict_json.JsonRefused as exc:
        raise Failed(exc.message) from None
    if not isinstance(found, expect):
        kinds: dict[type, str] = {dict: "an object", list: "a list"}
        kind = kinds.get(type(found), "a single value")
        raise Failed(f"{what}: not the JSON expected ({kind} at the top level)")
    return found


def json_records(text: str, what: str) -> list[dict[str, Any]]:
    """A JSON list of objects that each have a string "id" (restic's and kopia's listings)."""
    records = parse_json(text or "[]", what, (list, type(None))) or []
    for item in records:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            raise Failed(f'{what}: an entry without a string "id"')
    return records


def load_config(path: Path) -> dict[str, Any]:
    try:
        cfg: dict[str, Any] = parse_json(path.read_bytes(), str(path))
    except OSError as exc:
        raise Failed(f"cannot read the backup plan {path}: {exc.strerror}") from None
    except Failed as exc:
        raise Failed(f"{exc.message}; rebuild and push the bundle") from None
    if cfg.get("format") != 1:
        raise Failed(f"{path}: unknown format {cfg.get('format')!r}; use this bundle's own script")
    return cfg


def read_secret(cfg: dict[str, Any], key: str) -> str | None:
    path = (cfg.get("secrets") or {}).get(key)
    if not path:
        return None
    try:
        value = Path(path).read_text()
    except OSError as exc:
        raise Failed(
            f"cannot read the secret file {path} ({exc.strerror}); activate the generation "
            "again (bundle switch HOST) so the switcher completes it"
        ) from None
    value = value.rstrip("\r\n")
    if "@@bundle-secret:" in value:
        raise Failed(f"{path} still holds a placeholder: the switcher did not complete it")
    return value


def healthcheck_url(cfg: dict[str, Any]) -> str | None:
    url: str | None = cfg.get("healthcheck_url")
    if url is None:
        with contextlib.suppress(Failed):
            url = read_secret(cfg, "healthcheck_url")
    return url.strip().rstrip("/") if url else None
