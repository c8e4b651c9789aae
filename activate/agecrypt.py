"""Opening age v1 files (https://age-encryption.org/v1) on the server, standard library only.

A host decrypts the secrets a push delivers as ciphertext with its own SSH host key, as
agenix does: `decrypt(data, [ssh_ed25519_identity(key_text)])`. Recipient stanzas `X25519`
and `ssh-ed25519` are understood; any other stanza is skipped (age allows them). The header
MAC and every payload chunk are checked; a mismatch, a truncation or a malformed file raises
AgeError with one line that holds no key or value.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from .agecipher import (
    X25519_BASE,
    CipherError,
    chacha20poly1305_decrypt,
    ed25519_scalar,
    ed25519_to_x25519_public,
    hkdf_sha256,
    x25519,
)

INTRO = b"age-encryption.org/v1\n"
CHUNK = 64 * 1024
VALUE_LIMIT = 512000  # podman's limit for a secret, and so for what a delivery decrypts
# the largest file that can hold a VALUE_LIMIT secret, with room for many recipient stanzas
DATA_LIMIT = 4 * VALUE_LIMIT
MAX_STANZAS = 256  # each may cost an X25519 ladder: a header cannot make a push take minutes
_ARMOR_BEGIN = b"-----BEGIN AGE ENCRYPTED FILE-----"
_ARMOR_END = b"-----END AGE ENCRYPTED FILE-----"
_ARG_RE = re.compile(rb"[\x21-\x7e]+")
_B64_RE = re.compile(rb"[A-Za-z0-9+/]*")
_X25519_LABEL = b"age-encryption.org/v1/X25519"
_SSH_LABEL = b"age-encryption.org/v1/ssh-ed25519"


class AgeError(Exception):
    """The file cannot be opened with these identities; the message is one line."""


@dataclass(frozen=True)
class Stanza:
    type: str
    args: tuple[str, ...]
    body: bytes


@dataclass(frozen=True, repr=False)
class Identity:
    """A key that can open a file: an X25519 scalar, and for an SSH key its public key blob."""

    scalar: bytes
    public: bytes  # the X25519 public key
    ssh_key: bytes | None = None  # the SSH wire form of the ed25519 public key
    name: str = ""  # how a person knows the key: "ssh-ed25519 AAAA…" or "age1…"

    def __repr__(self) -> str:  # never show the scalar
        return f"Identity({self.name!r})"

    def unwrap(self, stanza: Stanza) -> bytes | None:
        """The file key when the stanza was made for this identity, else None."""
        if stanza.type == "X25519" and self.ssh_key is None:
            if len(stanza.args) != 1:
                raise AgeError("malformed X25519 recipient stanza")
            share = _b64_exact(stanza.args[0], 32, "X25519 stanza share")
            return self._open(share, self.scalar, _X25519_LABEL, stanza.body)
        if stanza.type == "ssh-ed25519" and self.ssh_key is not None:
            if len(stanza.args) != 2:
                raise AgeError("malformed ssh-ed25519 recipient stanza")
            tag = _b64_exact(stanza.args[0], 4, "ssh-ed25519 stanza tag")
            share = _b64_exact(stanza.args[1], 32, "ssh-ed25519 stanza share")
            if not hmac.compare_digest(tag, hashlib.sha256(self.ssh_key).digest()[:4]):
                return None
            tweak = hkdf_sha256(b"", self.ssh_key, _SSH_LABEL)
            secret = x25519(tweak, x25519(self.scalar, share))
            return self._open(share, secret, _SSH_LABEL, stanza.body, shared=True)
        return None

    def _open(
        self, share: bytes, scalar: bytes, label: bytes, body: bytes, shared: bool = False
    ) -> bytes | None:
        secret = scalar if shared else x25519(scalar, share)
        if secret == bytes(32):
            raise AgeError("recipient stanza has a low-order share")
        if len(body) != 32:
            raise AgeError("recipient stanza body is not a wrapped 16-byte file key")
        key = hkdf_sha256(secret, share + self.public, label)
        try:
            return chacha20poly1305_decrypt(key, bytes(12), body)
        except CipherError:
            return None  # made for another key with the same type


# --- identities ---------------------------------------------------------------------------------


def x25519_identity(text: str) -> Identity:
    """An age secret key, `AGE-SECRET-KEY-1…` (bech32)."""
    text = text.strip()
    if not text.upper().startswith("AGE-SECRET-KEY-1"):
        raise AgeError("not an age secret key (AGE-SECRET-KEY-1…)")
    hrp, data = _bech32_decode(text)
    if hrp != "age-secret-key-" or len(data) != 32:
        raise AgeError("not an age secret key (AGE-SECRET-KEY-1…)")
    public = x25519(data, X25519_BASE)
    return Identity(data, public, None, "age X25519 key")


def ssh_ed25519_identity(private_key_text: str) -> Identity:
    """An unencrypted OpenSSH ed25519 private key (as in /etc/ssh/ssh_host_ed25519_key)."""
    blob = _openssh_blob(private_key_text)
    try:
        seed, public = _openssh_ed25519(blob)
        x_public = ed25519_to_x25519_public(public)
    except (struct.error, IndexError, ValueError, UnicodeDecodeError) as e:
        raise AgeError(f"not a readable OpenSSH ed25519 private key ({e})") from None
    scalar = ed25519_scalar(seed)
    if not hmac.compare_digest(x25519(scalar, X25519_BASE), x_public):
        raise AgeError("the OpenSSH ed25519 key's public half does not match its private half")
    ssh_key = _string(b"ssh-ed25519") + _string(public)
    name = "ssh-ed25519 " + base64.b64encode(ssh_key).decode()
    return Identity(scalar, x_public, ssh_key, name)


def _openssh_blob(text: str) -> bytes:
    lines = [line.strip() for line in text.strip().splitlines()]
    if len(lines) < 3 or lines[0] != "-----BEGIN OPENSSH PRIVATE KEY-----":
        raise AgeError("not an OpenSSH private key (no BEGIN OPENSSH PRIVATE KEY line)")
    if lines[-1] != "-----END OPENSSH PRIVATE KEY-----":
        raise AgeError("OpenSSH private key is cut short (no END line)")
    try:
        return base64.b64decode("".join(lines[1:-1]), validate=True)
    except (binascii.Error, ValueError):
        raise AgeError("OpenSSH private key is not valid base64") from None


def _openssh_ed25519(blob: bytes) -> tuple[bytes, bytes]:
    magic = b"openssh-key-v1\0"
    if not blob.startswith(magic):
        raise ValueError("no openssh-key-v1 header")
    reader = _Reader(blob[len(magic) :])
    cipher, kdf, _options = reader.string(), reader.string(), reader.string()
    if cipher != b"none" or kdf != b"none":
        raise AgeError("the OpenSSH private key is protected by a passphrase; a host key is not")
    if reader.uint32() != 1:
        raise ValueError("more than one key")
    reader.string()  # the public key, repeated inside
    private = _Reader(reader.string())
    if private.uint32() != private.uint32():
        raise ValueError("check words differ")
    kind = private.string()
    if kind != b"ssh-ed25519":
        raise AgeError(f"the OpenSSH private key is {kind.decode()!r}, not ssh-ed25519")
    public, secret = private.string(), private.string()
    if len(public) != 32 or len(secret) != 64 or secret[32:] != public:
        raise ValueError("ed25519 key of the wrong length")
    return secret[:32], public


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def uint32(self) -> int:
        (value,) = struct.unpack_from(">I", self.data, self.at)
        self.at += 4
        return int(value)

    def string(self) -> bytes:
        size = self.uint32()
        if self.at + size > len(self.data):
            raise ValueError("a length runs past the end")
        value = self.data[self.at : self.at + size]
        self.at += size
        return value


def _string(value: bytes) -> bytes:
    return struct.pack(">I", len(value)) + value


_BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


def _bech32_decode(text: str) -> tuple[str, bytes]:
    if text != text.lower() and text != text.upper():
        raise AgeError("age key mixes upper and lower case")
    text = text.lower()
    hrp, sep, rest = text.rpartition("1")
    if not sep or not hrp or len(rest) < 6 or any(c not in _BECH32 for c in rest):
        raise AgeError("not an age secret key (AGE-SECRET-KEY-1…)")
    values = [_BECH32.index(c) for c in rest]
    if _bech32_polymod([ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp] + values) != 1:
        raise AgeError("age secret key has a bad checksum (a typo?)")
    acc, bits, out = 0, 0, bytearray()
    for v in values[:-6]:
        acc, bits = (acc << 5) | v, bits + 5
        if bits >= 8:
            bits -= 8
            out.append((acc >> bits) & 0xFF)
    if bits >= 5 or acc & ((1 << bits) - 1):
        raise AgeError("age secret key has stray padding bits")
    return hrp, bytes(out)


def _bech32_polymod(values: list[int]) -> int:
    gen = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
    chk = 1
    for v in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i in range(5):
            chk ^= gen[i] if (top >> i) & 1 else 0
    return chk


# --- the file -----------------------------------------------------------------------------------


def decrypt(data: bytes, identities: Sequence[Identity]) -> bytes:
    """The plaintext of an age v1 file (binary or armored) one of `identities` can open."""
    if len(data) > DATA_LIMIT:
        raise AgeError(f"age file is {len(data)} bytes, more than {DATA_LIMIT}")
    if data.lstrip().startswith(_ARMOR_BEGIN):
        data = _dearmor(data)
    stanzas, mac_input, mac, rest = _header(data)
    file_key = None
    for stanza in stanzas:
        for identity in identities:
            file_key = identity.unwrap(stanza)
            if file_key is not None:
                break
        if file_key is not None:
            break
    if file_key is None:
        names = ", ".join(i.name for i in identities) or "no key"
        raise AgeError(f"not encrypted to this host's key {names}")
    expected = hmac.new(hkdf_sha256(file_key, b"", b"header"), mac_input, hashlib.sha256).digest()
    if not hmac.compare_digest(expected, mac):
        raise AgeError("age header was changed after it was written (header MAC mismatch)")
    return _payload(file_key, rest)


def _dearmor(data: bytes) -> bytes:
    lines = data.strip().split(b"\n")
    lines = [line.rstrip(b"\r") for line in lines]
    if lines[0] != _ARMOR_BEGIN or lines[-1] != _ARMOR_END:
        raise AgeError("armored age file is cut short (no END line)")
    body = lines[1:-1]
    if any(len(line) > 64 for line in body) or any(len(line) != 64 for line in body[:-1]):
        raise AgeError("armored age file has lines of the wrong width")
    try:
        return base64.b64decode(b"".join(body), validate=True)
    except (binascii.Error, ValueError):
        raise AgeError("armored age file is not valid base64") from None


def _header(data: bytes) -> tuple[list[Stanza], bytes, bytes, bytes]:
    if not data.startswith(INTRO):
        raise AgeError("not an age v1 file (no age-encryption.org/v1 line)")
    at, stanzas = len(INTRO), list[Stanza]()
    while True:
        end = data.find(b"\n", at)
        if end < 0:
            raise AgeError("age header is cut short")
        line = data[at:end]
        if line.startswith(b"--- "):
            mac = _b64_exact(line[4:].decode("ascii", "replace"), 32, "header MAC")
            return stanzas, data[: at + 3], mac, data[end + 1 :]
        if not line.startswith(b"-> "):
            raise AgeError("age header has a line that is neither a stanza nor the MAC")
        args = line[3:].split(b" ")
        if not all(_ARG_RE.fullmatch(arg) for arg in args):
            raise AgeError("age header has a malformed stanza line")
        if len(stanzas) == MAX_STANZAS:
            raise AgeError(f"age header has more than {MAX_STANZAS} recipient stanzas")
        body, at = _stanza_body(data, end + 1)
        stanzas.append(Stanza(args[0].decode(), tuple(a.decode() for a in args[1:]), body))


def _stanza_body(data: bytes, at: int) -> tuple[bytes, int]:
    """The body lines of a stanza: full 64-column lines, then one shorter (maybe empty)."""
    encoded = b""
    while True:
        end = data.find(b"\n", at)
        if end < 0:
            raise AgeError("age header is cut short inside a stanza")
        line = data[at:end]
        if len(line) > 64 or not _B64_RE.fullmatch(line):
            raise AgeError("age header has a malformed stanza body")
        encoded += line
        at = end + 1
        if len(line) < 64:
            return _b64_raw(encoded, "stanza body"), at


def _payload(file_key: bytes, rest: bytes) -> bytes:
    if len(rest) < 16:
        raise AgeError("age file is cut short (no payload nonce)")
    key = hkdf_sha256(file_key, rest[:16], b"payload")
    sealed, out = rest[16:], []
    if not sealed:
        raise AgeError("age file is cut short (no payload)")
    size = CHUNK + 16
    for counter, at in enumerate(range(0, len(sealed), size)):
        chunk = sealed[at : at + size]
        last = at + size >= len(sealed)
        nonce = counter.to_bytes(11, "big") + (b"\x01" if last else b"\x00")
        try:
            plain = chacha20poly1305_decrypt(key, nonce, chunk)
        except CipherError:
            where = "its last chunk" if last else f"chunk {counter}"
            raise AgeError(
                f"age payload was changed or cut short ({where} failed authentication)"
            ) from None
        if last and not plain and counter > 0:
            raise AgeError("age payload ends with an empty chunk")
        out.append(plain)
    value = b"".join(out)
    if len(value) > VALUE_LIMIT:
        raise AgeError(f"decrypted value is {len(value)} bytes, more than {VALUE_LIMIT}")
    return value


def _b64_raw(text: bytes, what: str) -> bytes:
    """age's base64: the standard alphabet, no padding, canonical (no stray low bits)."""
    if not _B64_RE.fullmatch(text) or len(text) % 4 == 1:
        raise AgeError(f"age {what} is not unpadded base64")
    try:
        value = base64.b64decode(text + b"=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise AgeError(f"age {what} is not unpadded base64") from None
    if base64.b64encode(value).rstrip(b"=") != text:
        raise AgeError(f"age {what} is not canonical base64")
    return value


def _b64_exact(text: str, size: int, what: str) -> bytes:
    value = _b64_raw(text.encode("ascii", "replace"), what)
    if len(value) != size:
        raise AgeError(f"age {what} is {len(value)} bytes, not {size}")
    return value
