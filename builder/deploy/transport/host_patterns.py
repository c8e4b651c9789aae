"""OpenSSH's host name patterns, as known_hosts and `ssh-keygen -F` match them (no paramiko).

Only `*` (any run of bytes) and `?` (one byte) are wildcards; everything else, `[` and `]`
included, is literal. A list is comma-separated; a matching `!pattern` vetoes the whole list.
Names and patterns are compared ASCII-lowercased, byte by byte, as OpenSSH's match.c does.
A hashed entry `|1|SALT|HASH` stands for one name: HMAC-SHA1 of that name keyed by the salt.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress

STAR, QUESTION, COMMA, BANG = ord("*"), ord("?"), ord(","), ord("!")
MAX_SUBPATTERN = 1023  # OpenSSH's buffer: a longer sub-pattern makes the whole list fail
HASH_MAGIC = b"|1|"
SALT_BYTES = 20  # SHA-1's size: OpenSSH refuses any other salt


def glob_match(name: bytes, pattern: bytes) -> bool:
    """`*` and `?` wildcards over bytes, every other byte literal (match.c's match_pattern)."""
    n = p = 0
    star, resume = -1, 0
    while n < len(name):
        if p < len(pattern) and pattern[p] == STAR:
            star, resume = p, n
            p += 1
        elif p < len(pattern) and pattern[p] in (QUESTION, name[n]):
            n += 1
            p += 1
        elif star >= 0:  # let the last `*` swallow one more byte and try again
            resume += 1
            n, p = resume, star + 1
        else:
            return False
    return all(c == STAR for c in pattern[p:])


def match_list(name: bytes, patterns: bytes) -> int:
    """1: a positive pattern matches; -1: a negated one does; 0: none (match_pattern_list)."""
    name = name.lower()
    positive = 0
    i = 0
    while i < len(patterns):
        negated = patterns[i] == BANG
        i += negated
        end = patterns.find(b",", i)
        end = len(patterns) if end < 0 else end
        sub = patterns[i:end]
        if len(sub) >= MAX_SUBPATTERN:
            return 0
        i = end + 1
        if glob_match(name, sub.lower()):
            if negated:
                return -1
            positive = 1
    return positive


def hashed_name(name: bytes, salt: bytes) -> bytes:
    """How `ssh-keygen -H` writes `name` with this salt."""
    digest = hmac.new(salt, name, hashlib.sha1).digest()
    return HASH_MAGIC + base64.b64encode(salt) + b"|" + base64.b64encode(digest)


def _salt(entry: bytes) -> bytes | None:
    if not entry.startswith(HASH_MAGIC):
        return None
    encoded, sep, _ = entry[len(HASH_MAGIC) :].partition(b"|")
    if not sep or not 0 < len(encoded) <= 1024:
        return None
    try:
        salt = base64.b64decode(b"".join(encoded.split()), validate=True)
    except (binascii.Error, ValueError):
        return None
    return salt if len(salt) == SALT_BYTES else None


def entry_matches(name: str, hosts: bytes) -> bool | None:
    """Whether a known_hosts host field names `name`; None: a broken hash (a bad line)."""
    raw = name.encode()
    if hosts.startswith(b"|"):
        salt = _salt(hosts)
        if salt is None:
            return None
        return hmac.compare_digest(hashed_name(raw, salt), hosts)
    return match_list(raw, hosts) == 1


def lookup_name(host: str, port: int, alias: str | None = None) -> str:
    """The name OpenSSH looks a server up under: the HostKeyAlias as written, else the host
    (a name lowercased, an address in its canonical form) with `[..]:port` unless port 22."""
    if alias is not None:
        return alias.lower()
    try:
        host = str(ipaddress.ip_address(host))
    except ValueError:
        host = host.lower()
    return host if port == 22 else f"[{host}]:{port}"
