"""manifest.delta.json: a manifest sent as its changes against a generation the server has.

    {"delta": 1, "base": "N-HASH12", "manifest_sha256": HEX,
     "set": {KEY: VALUE}, "unset": [KEY],
     "entries": {TABLE: {KEY: VALUE}}, "removed": {TABLE: [KEY]}}

`set` and `unset` replace or drop top-level keys of the base's manifest; `entries` and `removed`
change single entries of one of its top-level tables (files, units, images, secrets, ...). The
rebuilt manifest is written the way the builder writes one (2-space indent, sorted keys, a final
newline) and must hash to `manifest_sha256`: the generation folder then holds byte for byte
what the builder wrote, and a delta that rebuilds to anything else is refused.

The builder checks a delta with this module before it sends it; a switcher whose bundle lacks
this file is never sent one.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import strict_json
from .errors import BadInput

DELTA_NAME = "manifest.delta.json"
PUSH_AGAIN = "push again with the builder's own push"
DELTA_FORMAT = 1
BASE_RE = re.compile(r"^[0-9]+-[0-9a-f]{12}\Z")
HEX_RE = re.compile(r"^[0-9a-f]{64}\Z")
KEYS = ("delta", "base", "manifest_sha256", "set", "unset", "entries", "removed")


@dataclass(frozen=True)
class Delta:
    """A parsed, well-formed delta; whether it fits its base is checked by `rebuild`."""

    base: str
    manifest_sha256: str
    set: Mapping[str, Any]
    unset: tuple[str, ...]
    entries: Mapping[str, Mapping[str, Any]]
    removed: Mapping[str, tuple[str, ...]]


def _bad(problem: str) -> BadInput:
    return BadInput(f"receive: {DELTA_NAME}: {problem}; {PUSH_AGAIN}")


def manifest_bytes(raw: Mapping[str, Any]) -> bytes:
    """A manifest as the builder writes manifest.json."""
    return (json.dumps(raw, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def _keys(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(k, str) for k in value):
        raise _bad(f"{where} must be a list of strings")
    if len(set(value)) != len(value):
        raise _bad(f"{where} names a key twice")
    return tuple(value)


def _table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _bad(f"{where} must be a JSON object")
    return value


def parse_delta(data: bytes) -> Delta:
    """Check the delta's shape; BadInput with one line naming what is wrong."""
    raw = strict_json.loads(data, f"receive: {DELTA_NAME}", PUSH_AGAIN)
    unknown = sorted(set(raw) - set(KEYS))
    if unknown:
        raise _bad(f"unknown key {unknown[0]!r}")
    if raw.get("delta") != DELTA_FORMAT or isinstance(raw.get("delta"), bool):
        raise _bad(f"this switcher reads delta format {DELTA_FORMAT}, got {raw.get('delta')!r}")
    base, digest = raw.get("base"), raw.get("manifest_sha256")
    if not isinstance(base, str) or not BASE_RE.fullmatch(base):
        raise _bad(f"base {base!r} is not a generation folder name like 7-1a2b3c4d5e6f")
    if not isinstance(digest, str) or not HEX_RE.fullmatch(digest):
        raise _bad("manifest_sha256 is not a lowercase sha256 hex digest")
    changed = _table(raw.get("set", {}), "set")
    unset = _keys(raw.get("unset", []), "unset")
    entries = {
        k: _table(v, f"entries.{k}") for k, v in _table(raw.get("entries", {}), "entries").items()
    }
    removed = {
        k: _keys(v, f"removed.{k}") for k, v in _table(raw.get("removed", {}), "removed").items()
    }
    top = [*changed, *unset]
    clash = sorted(set(top) & (entries.keys() | removed.keys())) or sorted(
        {k for k in top if top.count(k) > 1}
    )
    if clash:
        raise _bad(f"key {clash[0]!r} is changed twice")
    for table, keys in removed.items():
        both = sorted(set(keys) & entries.get(table, {}).keys())
        if both:
            raise _bad(f"{table}.{both[0]} is both changed and removed")
    return Delta(base, digest, changed, unset, entries, removed)


def rebuild(base: Mapping[str, Any], delta: Delta) -> bytes:
    """The manifest bytes the delta describes; BadInput unless they hash as it says."""
    raw = dict(base)
    for key in delta.unset:
        if key not in raw:
            raise _bad(f"unset names {key!r}, which the base's manifest does not have")
        del raw[key]
    raw.update(delta.set)
    for table in sorted(delta.entries.keys() | delta.removed.keys()):
        if not isinstance(raw.get(table), dict):
            raise _bad(f"{table} is not a table of the base's manifest")
        merged = dict(raw[table])
        for key in delta.removed.get(table, ()):
            if key not in merged:
                raise _bad(f"removed.{table} names {key!r}, which the base does not have")
            del merged[key]
        merged.update(delta.entries.get(table, {}))
        raw[table] = merged
    data = manifest_bytes(raw)
    if hashlib.sha256(data).hexdigest() != delta.manifest_sha256:
        raise _bad(
            f"the manifest rebuilt from base {delta.base} does not hash to manifest_sha256 "
            "(the server's copy of the base differs from the builder's)"
        )
    return data
