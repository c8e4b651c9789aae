"""The deploying machine's age identities: what decrypts a secret for `edit`, a push or a check.

Tried in this order, every one that exists:
$BUNDLE_AGE_IDENTITY (a file), ~/.config/bundle/age/keys.txt, ~/.ssh/id_ed25519, and last
the recovery key (stacks/secrets/recovery.key.age) with its passphrase.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pyrage

from builder.secrets.fileformat import SecretsError
from builder.stack import stackfiles

RECOVERY_KEY = "recovery.key.age"
RECOVERY_PUB = "recovery.pub"
ENV = "BUNDLE_AGE_IDENTITY"


def identity_files() -> list[tuple[Path, str]]:
    """The identity files to try, and where each came from, in order."""
    out: list[tuple[Path, str]] = []
    env = os.environ.get(ENV)
    if env:
        out.append((Path(env).expanduser(), f"${ENV}"))
    out.append(
        (Path("~/.config/bundle/age/keys.txt").expanduser(), "~/.config/bundle/age/keys.txt")
    )
    out.append((Path("~/.ssh/id_ed25519").expanduser(), "~/.ssh/id_ed25519"))
    return out


def parse_identities(text: bytes, where: str) -> list[Any]:
    """An age identity file (AGE-SECRET-KEY-1… lines) or an unencrypted SSH private key."""
    if b"PRIVATE KEY-----" in text:
        try:
            return [pyrage.ssh.Identity.from_buffer(text)]
        except pyrage.IdentityError as exc:
            raise SecretsError(
                f"{where}: cannot use this SSH key ({exc}); a passphrase-protected key is not "
                f"read: point ${ENV} at an age identity file instead"
            ) from None
    out = []
    for number, line in enumerate(text.decode(errors="replace").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            out.append(pyrage.x25519.Identity.from_str(line))
        except pyrage.IdentityError:
            raise SecretsError(
                f"{where}:{number}: not an age identity (AGE-SECRET-KEY-1…)"
            ) from None
    return out


_LOCK = threading.Lock()
_FOUND: dict[Path, list[Any]] = {}


_SKIPPED: dict[Path, str] = {}


def own_identities() -> list[Any]:
    """The identities of this machine's files (no prompt), read once per process.

    A default file that cannot be used (a passphrase-protected ~/.ssh/id_ed25519, the common
    case) is passed over and named if nothing opens the file; the one $BUNDLE_AGE_IDENTITY
    names must work.
    """
    out = []
    for path, where in identity_files():
        explicit = where == f"${ENV}"
        if not path.is_file():
            if explicit:
                raise SecretsError(f"${ENV} names {path}, which is not a file")
            continue
        with _LOCK:
            if path not in _FOUND and path not in _SKIPPED:
                try:
                    _FOUND[path] = parse_identities(path.read_bytes(), where)
                except (SecretsError, OSError) as exc:
                    if explicit:
                        raise SecretsError(str(exc)) from None
                    locked = "decrypted first" in str(exc)  # pyrage: a passphrase-protected key
                    _SKIPPED[path] = f"{where} skipped: " + (
                        "it has a passphrase" if locked else "not an identity file"
                    )
            out += _FOUND.get(path, [])
    return out


def recovery_identity(stacks_dir: Path, ask: Any) -> list[Any]:
    """The recovery key, decrypted with a passphrase from `ask(where)`; [] if there is none."""
    path = stacks_dir / "secrets" / RECOVERY_KEY
    if not os.path.lexists(path):
        return []
    with _LOCK:
        if path in _FOUND:
            return _FOUND[path]
    try:
        data = stackfiles.read_bytes(path, stacks_dir)
    except stackfiles.UnreadableFile as exc:
        raise SecretsError(str(exc.problem)) from None
    where = f"{stacks_dir.name}/secrets/{RECOVERY_KEY}"
    passphrase = ask(where)
    try:
        text = pyrage.passphrase.decrypt(data, passphrase)
    except pyrage.DecryptError:
        raise SecretsError(f"{where}: wrong passphrase; nothing was changed") from None
    found = parse_identities(bytes(text), where)
    with _LOCK:
        _FOUND[path] = found
    return found


def none_found(where: str) -> str:
    names = ", ".join(w for _, w in identity_files())
    skipped = "".join(f"; {why}" for why in _SKIPPED.values())
    return (
        f"{where}: no identity here can decrypt it (tried {names} and the recovery key"
        f"{skipped}); "
        f"set ${ENV} to an identity file of one of its recipients"
    )
