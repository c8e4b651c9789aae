"""Secrets on the server: kept outside every generation, by name and keyed fingerprint.

STATE/secrets/NAME/FINGERPRINT   one version of a secret: its value, 0600, folders 0700
STATE/rendered/ID/PATH           a bundle file completed with the values it embeds; the folder
                                 is 0700 (only root reaches it), the file has its manifest mode

A generation's manifest says what it needs (docs/secrets.md):

    "secrets":  {NAME: {"fingerprint": HEX64, "podman_secret": "NAME-HEX12" | null,
                        "used_by": [unit keys]}}
    "rendered": {BUNDLE PATH: {"id": HEX16, "secrets": [NAME, ...]}}

`secrets-have` and `secrets-receive` store the versions a push brings. Activation checks that
every version the target needs is here before it changes anything, creates the podman secrets
(one per version: `NAME-HEX12`, so units of an older generation keep naming theirs) and writes
the completed files. gc drops the versions and files no remaining generation uses. Values are
never printed, logged or written anywhere else.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any

from . import durable, strict_json
from .errors import BadInput, Failed, SwitcherError
from .manifest import SECRET_NAME_RE, SHA256_RE, RenderedFile, SecretUse
from .protocol import (
    Collected,
    SecretCiphertext,
    SecretsDelivery,
    SecretsMissing,
    SecretsStored,
    SecretValue,
    SecretVersion,
)
from .secrets_open import open_all
from .store import Generation, Store, remove_tree
from .systemd import Services

NAME_RE = SECRET_NAME_RE  # one rule for a secret's name, in a manifest or a request
MARKER_RE = re.compile(rb"@@bundle-secret:([a-z0-9][a-z0-9_-]{0,62})@@")
REQUEST_LIMIT = 16 * 1024 * 1024
PODMAN_TIMEOUT = 120


@dataclass(frozen=True)
class Needs:
    secrets: Mapping[str, SecretUse]
    rendered: Mapping[str, RenderedFile]


def _bad(where: str, problem: str) -> BadInput:
    return BadInput(f"{where}: {problem}; rebuild the bundle with a matching builder")


def needs_of(store: Store, gen: Generation) -> Needs:
    """What a generation needs; its manifest is checked (hash and folder) by load_manifest."""
    manifest = store.load_manifest(gen)
    return Needs(manifest.secrets, manifest.rendered)


# --- the store --------------------------------------------------------------------------------


def secrets_root(store: Store) -> Path:
    return store.root / "secrets"


def rendered_root(store: Store) -> Path:
    return store.root / "rendered"


def value_path(store: Store, name: str, fingerprint: str) -> Path:
    return secrets_root(store) / name / fingerprint


def _private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)


def _write_private(dest: Path, data: bytes, mode: int) -> None:
    """Write a file that only root may read, durably (the temp file is 0600 until renamed)."""
    durable.write_file(dest, data, mode)


def _read_request(stream: IO[bytes], command: str) -> Any:
    data = stream.read(REQUEST_LIMIT + 1) or b"null"
    hint = "use the builder's push"
    return strict_json.loads(data, f"{command}: stdin", hint, expect=None, limit=REQUEST_LIMIT)


def _version(item: Any, command: str) -> SecretVersion:
    if not isinstance(item, dict):
        raise BadInput(f"{command}: each entry must be an object with name and fingerprint")
    name, fp = item.get("name"), item.get("fingerprint")
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise BadInput(f"{command}: invalid secret name {name!r}")
    if not isinstance(fp, str) or not SHA256_RE.fullmatch(fp):
        raise BadInput(f"{command}: {name}: the fingerprint is not a lowercase sha256 hex digest")
    return SecretVersion(name=name, fingerprint=fp)


def versions_request(request: Any) -> tuple[SecretVersion, ...]:
    """`secrets-have`'s stdin, parsed JSON, as the versions it asks about."""
    if not isinstance(request, list):
        raise BadInput("secrets-have: stdin must be a JSON list of {name, fingerprint}")
    return tuple(_version(item, "secrets-have") for item in request)


def delivery_request(request: Any) -> SecretsDelivery:
    """`secrets-receive`'s stdin, parsed JSON: each version checked, its value not yet. An item
    carries its `value` (base64) or its `age` file (base64), which the server decrypts."""
    items = request.get("secrets") if isinstance(request, dict) else None
    if not isinstance(items, list):
        raise BadInput('secrets-receive: stdin must be {"secrets": [{name, fingerprint, value}]}')
    delivered: list[SecretValue | SecretCiphertext] = []
    for item in items:
        version = _version(item, "secrets-receive")
        name, fp = version.name, version.fingerprint
        # a value of the wrong type is refused later, as one that is not base64
        if "age" in item:
            delivered.append(SecretCiphertext(name=name, fingerprint=fp, age=str(item["age"])))
        else:
            value = str(item.get("value", ""))
            delivered.append(SecretValue(name=name, fingerprint=fp, value=value))
    return SecretsDelivery(secrets=tuple(delivered))


def have(store: Store, stream: IO[bytes]) -> SecretsMissing:
    """`secrets-have`: which of the (name, fingerprint) versions this server lacks."""
    asked = versions_request(_read_request(stream, "secrets-have"))
    missing = (v for v in asked if not value_path(store, v.name, v.fingerprint).is_file())
    return SecretsMissing(missing=tuple(missing))


def receive(store: Store, number: int, stream: IO[bytes], root: Path) -> SecretsStored:
    """`secrets-receive --generation N`: store versions that generation N needs; caller locks.
    Every item is checked and opened (age files with ROOT's host key) before one is stored."""
    request = delivery_request(_read_request(stream, "secrets-receive"))
    needs = needs_of(store, store.find(number))
    for item in request.secrets:
        use = needs.secrets.get(item.name)
        if use is None or use.fingerprint != item.fingerprint:
            raise BadInput(
                f"secrets-receive: generation {number} does not use {item.name} version "
                f"{item.fingerprint[:12]}"
            )
    stored, present = [], []
    for item, value in zip(request.secrets, open_all(request.secrets, root), strict=True):
        name, fp = item.name, item.fingerprint
        dest = value_path(store, name, fp)
        if dest.is_file():
            present.append(name)
            continue
        _private_dir(secrets_root(store))
        _private_dir(dest.parent)
        _write_private(dest, value, 0o600)
        stored.append(name)
    return SecretsStored(
        generation=number, stored=tuple(sorted(stored)), already_present=tuple(sorted(present))
    )


# --- activation -------------------------------------------------------------------------------


def problems(store: Store, gen: Generation) -> list[str]:
    """What keeps the generation from running: versions that are not here (one line each)."""
    needs = needs_of(store, gen)
    out = []
    for use in needs.secrets.values():
        if use.fingerprint is None:
            out.append(f"secret {use.name} was not set when generation {gen.number} was built")
        elif not value_path(store, use.name, use.fingerprint).is_file():
            out.append(f"secret {use.name} version {use.short} is missing")
    return out


def check(store: Store, gen: Generation, action: str) -> None:
    """Refuse before any change when a secret version the generation needs is gone."""
    found = problems(store, gen)
    if found:
        raise Failed(
            f"{action} to generation {gen.number} refused: {'; '.join(found)} "
            f"(looked in {secrets_root(store)}); push generation {gen.number} again from a "
            "checkout whose secrets files hold those values (bundle push HOST --generation "
            f"{gen.number}), or pick another generation"
        )


def _podman(argv: list[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            argv,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=PODMAN_TIMEOUT,
            check=False,
        )
    except FileNotFoundError:
        raise Failed("podman is not installed on this server (not on PATH)") from None
    except subprocess.TimeoutExpired:
        raise Failed(f"`{' '.join(argv[:4])}` did not finish within {PODMAN_TIMEOUT} s") from None


def _podman_secret_exists(name: str) -> bool:
    return (
        _podman(["podman", "secret", "inspect", "--format", "{{.ID}}", "--", name]).returncode == 0
    )


def apply(store: Store, gen: Generation, services: Services) -> dict[str, Any]:
    """Make what the generation needs exist: podman secrets and completed files. Additive and
    idempotent, so it runs before the switch changes anything; the caller holds the lock."""
    needs = needs_of(store, gen)
    created: list[str] = []
    if services.managed:
        for use in needs.secrets.values():
            if not use.podman or not use.fingerprint or _podman_secret_exists(use.podman):
                continue
            done = _podman(
                [
                    "podman",
                    "secret",
                    "create",
                    "--",
                    use.podman,
                    str(value_path(store, use.name, use.fingerprint)),
                ]
            )
            if done.returncode != 0:
                lines = [ln for ln in (done.stderr or "").splitlines() if ln.strip()]
                raise Failed(
                    f"creating podman secret {use.podman} failed ({lines[-1] if lines else 'no message'}); "
                    "see `podman secret ls`"
                )
            created.append(use.podman)
    written: list[str] = []
    for f in needs.rendered.values():
        dest = rendered_root(store) / f.ident / f.path
        if dest.is_file():
            continue
        template = (gen.path / f.path).read_bytes()
        values: dict[str, bytes] = {}
        for name in f.secrets:
            use = needs.secrets[name]
            assert use.fingerprint is not None  # check() ran first
            values[name] = value_path(store, name, use.fingerprint).read_bytes()

        def fill(
            m: re.Match[bytes], values: dict[str, bytes] = values, f: RenderedFile = f
        ) -> bytes:
            name = m.group(1).decode()
            if name not in values:
                raise _bad(f"rendered.{f.path}", f"embeds secret {name}, which it does not list")
            return values[name]

        data = MARKER_RE.sub(fill, template)
        folder = rendered_root(store) / f.ident
        _private_dir(rendered_root(store))
        for part in (folder, *(folder / p for p in _prefixes(f.path))):
            _private_dir(part)
        _write_private(dest, data, f.mode & 0o7777)
        written.append(f.path)
    return {
        "used": sorted(needs.secrets),
        "podman_created": sorted(created),
        "files_completed": sorted(written),
    }


def redactor(store: Store, gen: Generation) -> Callable[[str], str]:
    """Hides the generation's secret values (and each line of a multi-line one) in text that
    its containers printed, before it goes into a report, history or the deployer's output."""
    hidden: dict[str, str] = {}
    needs: Iterable[SecretUse]
    try:
        needs = needs_of(store, gen).secrets.values()
    except SwitcherError:
        needs = ()  # a generation this damaged never passed its checks; nothing to hide
    for use in needs:
        if use.fingerprint is None:
            continue
        try:
            value = value_path(store, use.name, use.fingerprint).read_bytes()
        except OSError:
            continue
        text = value.decode("utf-8", "replace")
        for part in (text, text.strip(), *text.splitlines()):
            if part.strip():
                hidden.setdefault(part.strip(), f"[secret {use.name}]")
    ordered = sorted(hidden, key=len, reverse=True)  # a value before its own parts

    def redact(line: str) -> str:
        for value in ordered:
            line = line.replace(value, hidden[value])
        return line

    return redact


def _prefixes(path: str) -> list[str]:
    """'files/web/a.conf' -> ['files', 'files/web']: the folders above a bundle file."""
    parts = path.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


# --- gc ---------------------------------------------------------------------------------------


def gc(store: Store, services: Services, collected: Collected) -> Collected:
    """Drop secret versions, their podman secrets and completed files that no remaining
    generation uses, and add them to what gc `collected`; the caller holds the lock."""
    keep_versions: set[tuple[str, str]] = set()
    keep_ids: set[str] = set()
    known: set[str] = set()
    for gen in store.generations():
        try:
            needs = needs_of(store, gen)
        except (SwitcherError, OSError, ValueError):
            return replace(collected, secret_versions_removed=0)  # unsure what is used: keep all
        keep_versions.update(
            (u.name, u.fingerprint) for u in needs.secrets.values() if u.fingerprint
        )
        keep_ids.update(f.ident for f in needs.rendered.values())
        known.update(needs.secrets)
    removed = 0
    root = secrets_root(store)
    if root.is_dir():
        for folder in sorted(root.iterdir()):
            if not folder.is_dir():
                continue
            known.add(folder.name)
            for version in sorted(folder.iterdir()):
                if version.name.startswith("."):
                    version.unlink(missing_ok=True)  # a temp file of a killed receive
                    continue
                if (folder.name, version.name) not in keep_versions:
                    version.unlink()
                    removed += 1
            if not any(folder.iterdir()):
                folder.rmdir()
    podman_removed = _podman_gc(known, keep_versions) if services.managed else []
    files_removed = 0
    rendered = rendered_root(store)
    if rendered.is_dir():
        for folder in sorted(rendered.iterdir()):
            if folder.name not in keep_ids:
                remove_tree(folder)
                files_removed += 1
    return replace(
        collected,
        secret_versions_removed=removed,
        podman_secrets_removed=tuple(podman_removed),
        completed_files_removed=files_removed,
    )


PODMAN_NAME_RE = re.compile(r"^([a-z0-9][a-z0-9_-]{0,62})-([0-9a-f]{12})\Z")


def _podman_gc(known: set[str], keep: set[tuple[str, str]]) -> list[str]:
    """podman secrets NAME-HEX12 of a secret bundle manages, whose version nothing keeps."""
    listed = _podman(["podman", "secret", "ls", "--format", "{{.Name}}"])
    if listed.returncode != 0:
        return []
    kept = {(name, fp[:12]) for name, fp in keep}
    removed = []
    for line in listed.stdout.split():
        m = PODMAN_NAME_RE.fullmatch(line)
        ours = m is not None and m.group(1) in known and (m.group(1), m.group(2)) not in kept
        if ours and _podman(["podman", "secret", "rm", "--", line]).returncode == 0:
            removed.append(line)
    return sorted(removed)
