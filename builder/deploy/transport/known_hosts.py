"""OpenSSH known_hosts files: read them as OpenSSH does, append an accepted key (no paramiko).

A line is `[@marker] HOSTS TYPE KEY [comment]`; HOSTS follows host_patterns.py. Lines OpenSSH
ignores are ignored here too: comments, unknown markers, unknown key types, truncated lines,
broken hashes. Keys are compared by their decoded blob, which holds the type and the key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import struct
from pathlib import Path

import attrs

from builder.deploy.transport.base import TransportError
from builder.deploy.transport.host_patterns import entry_matches

CA, REVOKED = "cert-authority", "revoked"
MARKERS = {b"@cert-authority": CA, b"@revoked": REVOKED}
BLANK = b" \t"

# sshkey.c's names; the short ones count in any case (OpenSSH accepts `ED25519 AAAA...`)
KEY_TYPES = frozenset(
    name
    for base in (
        "ssh-ed25519",
        "sk-ssh-ed25519@openssh.com",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ecdsa-sha2-nistp256@openssh.com",
        "webauthn-sk-ecdsa-sha2-nistp256@openssh.com",
        "ssh-rsa",
        "rsa-sha2-256",
        "rsa-sha2-512",
        "ssh-dss",
    )
    for name in (base, base.removesuffix("@openssh.com") + "-cert-v01@openssh.com")
)
SHORT_TYPES = frozenset({"ed25519", "ed25519-sk", "ecdsa", "ecdsa-sk", "rsa", "dsa"})


def fingerprint(blob_b64: str) -> str:
    """OpenSSH's `SHA256:...` fingerprint of a key given as its base64 blob."""
    digest = hashlib.sha256(base64.b64decode(blob_b64)).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _decode(blob_b64: str) -> bytes | None:
    try:
        return base64.b64decode("".join(blob_b64.split()), validate=True)
    except (binascii.Error, ValueError):
        return None


def blob_type(blob_b64: str) -> str | None:
    """The key type written inside a key blob (its first SSH string)."""
    blob = _decode(blob_b64)
    if blob is None or len(blob) < 4:
        return None
    (size,) = struct.unpack(">I", blob[:4])
    name = blob[4 : 4 + size]
    return name.decode("ascii", "replace") if len(name) == size else None


@attrs.frozen
class HostKey:
    """One key line of a known_hosts file that names some host."""

    file: Path
    line: int
    hosts: bytes
    key_type: str
    blob: str
    marker: str | None = None

    def where(self) -> str:
        return f"{self.file}:{self.line}"

    def is_key(self, blob_b64: str) -> bool:
        # a line whose blob does not decode never equals the server's key (safe side: changed)
        mine = _decode(self.blob)
        return mine is not None and mine == _decode(blob_b64)

    def plain_type(self) -> str:
        """The type to ask a server for: the blob's own, else the line's."""
        return blob_type(self.blob) or self.key_type


def _words(text: bytes) -> tuple[bytes, bytes]:
    """The first blank-separated word of text, and what follows it, blanks stripped."""
    text = text.lstrip(BLANK)
    end = next((i for i, c in enumerate(text) if c in BLANK), len(text))
    return text[:end], text[end:].lstrip(BLANK)


def _marker(text: bytes) -> tuple[str | None, bytes] | None:
    """hostfile.c's check_markers: at most one, ended by a space (else a tab); None: bad."""
    if not text.startswith(b"@"):
        return None, text
    end = text.find(b" ")
    end = text.find(b"\t") if end < 0 else end
    name = MARKERS.get(text[:end]) if end > 1 else None
    rest = text[end:].lstrip(BLANK) if name else b""
    if name is None or rest.startswith(b"@"):
        return None
    return name, rest


def parse_line(path: Path, number: int, raw: bytes) -> HostKey | None:
    """One line as OpenSSH reads it (it stops at a NUL byte); None: ignored."""
    text = raw.split(b"\0", 1)[0].lstrip(BLANK)
    if not text or text.startswith(b"#"):
        return None
    marked = _marker(text)
    if marked is None:
        return None
    marker, text = marked
    hosts, text = _words(text)
    key_type, text = _words(text)
    blob, _ = _words(text)
    if not hosts or not blob or key_type.startswith(b"#") or blob.startswith(b"#"):
        return None
    type_name = key_type.decode("ascii", "replace")
    if type_name not in KEY_TYPES and type_name.lower() not in SHORT_TYPES:
        return None
    return HostKey(path, number, hosts, type_name, blob.decode("ascii", "replace"), marker)


def read_known_hosts(path: Path) -> list[HostKey]:
    """Every usable key line of one file; a missing file has none, an unreadable one stops."""
    try:
        data = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as e:
        raise TransportError(
            f"cannot read known_hosts file {path}: {e.strerror or e}; fix its permissions "
            "or remove it from UserKnownHostsFile/GlobalKnownHostsFile in your ssh config"
        ) from None
    lines = data.split(b"\n")  # only \n ends a line for OpenSSH, not \r or \f
    parsed = (parse_line(path, n, raw) for n, raw in enumerate(lines, 1))
    return [key for key in parsed if key is not None]


@attrs.frozen
class KnownHosts:
    """The keys of several known_hosts files, in the order OpenSSH reads them.

    user_file: where an accepted key is appended (the first UserKnownHostsFile), or None.
    """

    files: tuple[Path, ...]
    keys: tuple[HostKey, ...]
    user_file: Path | None = None

    @classmethod
    def load(cls, files: list[Path], user_file: Path | None = None) -> KnownHosts:
        keys = [k for f in dict.fromkeys(files) for k in read_known_hosts(f)]
        return cls(tuple(files), tuple(keys), user_file)

    def lookup(self, name: str) -> list[HostKey]:
        """Every line that names `name`, markers included (what `ssh-keygen -F` lists)."""
        return [k for k in self.keys if entry_matches(name, k.hosts)]

    def add(self, name: str, key_type: str, blob: str) -> KnownHosts:
        """Append `name type blob` to the user file (created 0644, its folder 0700)."""
        path = self.user_file
        if path is None:
            raise OSError(0, "no UserKnownHostsFile to add it to")
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        line = f"{name} {key_type} {blob}\n"
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        with os.fdopen(fd, "a") as f:
            # a file whose last line lacks its newline would glue our line onto it
            if f.tell() > 0 and not path.read_bytes().endswith(b"\n"):
                line = "\n" + line
            f.write(line)
        number = path.read_bytes().count(b"\n")
        added = HostKey(path, number, name.encode(), key_type, blob)
        return attrs.evolve(self, keys=(*self.keys, added))
