"""OpenSSH known_hosts files: look a server's key up, append an accepted one (no paramiko).

Keys are compared as (type, base64 blob), which is all a known_hosts line holds. Supported:
plain and hashed (`|1|salt|hash`) names, `[host]:port`, comma lists, `*`/`?` patterns and
`!negations`. Lines with markers (`@cert-authority`, `@revoked`) are skipped.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import hmac
import os
from pathlib import Path

import attrs


def host_key_name(host: str, port: int) -> str:
    """How known_hosts names a server: `host` on port 22, `[host]:port` otherwise."""
    return host if port == 22 else f"[{host}]:{port}"


def fingerprint(blob_b64: str) -> str:
    """OpenSSH's `SHA256:...` fingerprint of a key given as its base64 blob."""
    digest = hashlib.sha256(base64.b64decode(blob_b64)).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


@attrs.frozen
class HostKey:
    """One key from one line of a known_hosts file."""

    file: Path
    line: int
    patterns: str
    key_type: str
    blob: str

    def where(self) -> str:
        return f"{self.file}:{self.line}"


def _hashed_match(entry: str, name: str) -> bool:
    try:
        _, magic, salt_b64, hash_b64 = entry.split("|")
        salt = base64.b64decode(salt_b64)
        want = base64.b64decode(hash_b64)
    except ValueError:
        return False
    if magic != "1":
        return False
    return hmac.compare_digest(hmac.new(salt, name.encode(), hashlib.sha1).digest(), want)


def name_matches(patterns: str, name: str) -> bool:
    """OpenSSH's rule: any positive pattern matches and no negated one does."""
    if patterns.startswith("|"):
        return _hashed_match(patterns, name)
    matched = False
    for pattern in patterns.split(","):
        negated = pattern.startswith("!")
        pattern = pattern.removeprefix("!")
        if fnmatch.fnmatchcase(name.lower(), pattern.lower()):
            if negated:
                return False
            matched = True
    return matched


def read_known_hosts(path: Path) -> list[HostKey]:
    """Every usable key line of one file; a missing file has none."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return []
    keys = []
    for number, raw in enumerate(text.splitlines(), 1):
        fields = raw.split()
        if len(fields) < 3 or fields[0].startswith(("#", "@")):
            continue
        keys.append(HostKey(path, number, fields[0], fields[1], fields[2]))
    return keys


@attrs.frozen
class KnownHosts:
    """The keys of several known_hosts files; the first one is where new keys go."""

    files: tuple[Path, ...]
    keys: tuple[HostKey, ...]

    @classmethod
    def load(cls, files: list[Path]) -> KnownHosts:
        keys = [k for f in files for k in read_known_hosts(f)]
        return cls(tuple(files), tuple(keys))

    def lookup(self, name: str) -> list[HostKey]:
        return [k for k in self.keys if name_matches(k.patterns, name)]

    def add(self, name: str, key_type: str, blob: str) -> KnownHosts:
        """Append `name type blob` to the first file (created 0644, its folder 0700)."""
        path = self.files[0]
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        line = f"{name} {key_type} {blob}\n"
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        with os.fdopen(fd, "a") as f:
            # a file whose last line lacks its newline would glue our line onto it
            if f.tell() > 0 and not path.read_bytes().endswith(b"\n"):
                line = "\n" + line
            f.write(line)
        number = len(path.read_text().splitlines())
        return attrs.evolve(self, keys=(*self.keys, HostKey(path, number, name, key_type, blob)))
