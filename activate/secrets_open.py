"""The value of each secret version a push delivers: sent as it is (base64), or as an age file
the server opens with its own SSH host key (ROOT/etc/ssh/ssh_host_ed25519_key), as agenix does.

Every item of a delivery is opened before anything is stored, so one bad item stores nothing.
An age file must hash (SHA-256) to the fingerprint it is delivered under: that is its version.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Sequence
from pathlib import Path

from .agecrypt import AgeError, Identity, decrypt, ssh_ed25519_identity
from .errors import BadInput, Failed
from .protocol import SecretCiphertext, SecretValue

VALUE_LIMIT = 512000  # podman's own limit for a secret
HOST_KEY = "etc/ssh/ssh_host_ed25519_key"


def host_key_path(root: Path) -> Path:
    return root / HOST_KEY


def host_identity(root: Path) -> Identity:
    """The host's ed25519 key as an age identity; read only when an age item arrives."""
    path = host_key_path(root)
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else "not ASCII"
        raise Failed(
            f"secrets-receive: cannot read this host's key {path} ({reason}); the host needs an "
            "ed25519 SSH host key to open secrets sent encrypted (ssh-keygen -A makes one)"
        ) from None
    try:
        return ssh_ed25519_identity(text)
    except AgeError as e:
        raise Failed(f"secrets-receive: this host's key {path}: {e}") from None


def _b64(text: str, where: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise BadInput(f"secrets-receive: {where} is not base64") from None


def _age_file(item: SecretCiphertext) -> bytes:
    """The delivered age file, checked to be the version it is delivered as."""
    data = _b64(item.age, f"secret {item.name}: the age file")
    if not hmac.compare_digest(hashlib.sha256(data).hexdigest(), item.fingerprint):
        raise BadInput(
            f"secrets-receive: secret {item.name}: the age file is not version "
            f"{item.fingerprint[:12]} (its SHA-256 differs); build and push again"
        )
    return data


def _open_age(name: str, data: bytes, identity: Identity) -> bytes:
    try:
        return decrypt(data, [identity])
    except AgeError as e:
        hint = (
            "add this key to the secret's recipients (bundle secrets recipients add) and push again"
            if str(e).startswith("not encrypted to")
            else "restore the secret's age file from git and push again"
        )
        raise BadInput(f"secrets-receive: secret {name}: {e}; {hint}") from None


def open_all(items: Sequence[SecretValue | SecretCiphertext], root: Path) -> list[bytes]:
    """Each item's value, in order; the first item that cannot be opened raises."""
    identity: Identity | None = None
    values = []
    for item in items:
        if isinstance(item, SecretCiphertext):
            data = _age_file(item)
            identity = identity or host_identity(root)
            value = _open_age(item.name, data, identity)
        else:
            value = _b64(item.value, f"{item.name}: the value")
        if not value or len(value) > VALUE_LIMIT:
            raise BadInput(
                f"secrets-receive: {item.name}: the value is empty or over {VALUE_LIMIT} bytes"
            )
        values.append(value)
    return values
