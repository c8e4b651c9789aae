"""The age file format (age-encryption.org/v1) as bundle uses it: recipients, headers, versions.

One secret is one age file whose plaintext is the value's UTF-8 bytes, so the `age` command
reads and writes them. Encryption and decryption go through pyrage (the Rust age crate);
this module only reads the header's text, which needs no key: the stanzas say to whom a
file is encrypted (an ssh-ed25519/ssh-rsa stanza carries a 4-byte tag of its recipient, an
X25519 stanza carries none, so those are counted).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re

import attrs
import pyrage

from builder.secrets.fileformat import SecretsError

MAGIC = b"age-encryption.org/v1\n"
ARMOR_BEGIN = b"-----BEGIN AGE ENCRYPTED FILE-----"
ARMOR_END = b"-----END AGE ENCRYPTED FILE-----"
HEADER_LIMIT = 64 * 1024  # a header bigger than this is not one bundle or age would write
SSH_TYPES = ("ssh-ed25519", "ssh-rsa")
AGE_KEY_RE = re.compile(r"age1[02-9ac-hj-np-z]{58}")


@attrs.frozen
class Recipient:
    """One key a file is encrypted to, as written in a stack: `age1…` or an SSH public key line."""

    text: str  # the key as written, without an SSH comment
    kind: str  # "X25519", "ssh-ed25519" or "ssh-rsa"
    tag: str | None  # the stanza tag of an SSH key (unpadded base64 of 4 bytes)
    comment: str = ""
    host_key: str | None = None  # a host whose key is not known here (a stand-in: tag None)

    def shown(self) -> str:
        if self.host_key is not None:
            return f"the host key of {self.host_key}"
        if self.kind == "X25519":
            return self.text
        short = self.text.split()[1][-12:]
        return f"{self.kind} …{short}" + (f" {self.comment}" if self.comment else "")

    def key(self) -> pyrage.x25519.Recipient | pyrage.ssh.Recipient:
        if self.host_key is not None:
            raise SecretsError(f"{self.host_key}: its host key is not known here")
        if self.kind == "X25519":
            return pyrage.x25519.Recipient.from_str(self.text)
        return pyrage.ssh.Recipient.from_str(self.text)


def parse_recipient(text: str, where: str) -> Recipient:
    """A recipient as written in a stack, or one line saying what is wrong with it."""
    words = text.strip().split()
    if len(words) == 1 and AGE_KEY_RE.fullmatch(words[0]):
        try:
            pyrage.x25519.Recipient.from_str(words[0])
        except pyrage.RecipientError:
            raise SecretsError(f"{where}: {words[0]!r} is not a valid age public key") from None
        return Recipient(words[0], "X25519", None)
    if len(words) >= 2 and words[0] in SSH_TYPES:
        try:
            blob = base64.b64decode(words[1], validate=True)
            pyrage.ssh.Recipient.from_str(f"{words[0]} {words[1]}")
        except (binascii.Error, pyrage.RecipientError):
            raise SecretsError(f"{where}: {words[0]} key {words[1][:16]}… is not valid") from None
        tag = base64.b64encode(hashlib.sha256(blob).digest()[:4]).decode().rstrip("=")
        return Recipient(f"{words[0]} {words[1]}", words[0], tag, " ".join(words[2:]))
    shown = text.strip()[:40]
    raise SecretsError(
        f"{where}: {shown!r} is not a recipient: give an age public key (age1…) or an SSH "
        "public key line (ssh-ed25519 AAAA… or ssh-rsa AAAA…)"
    )


def version(data: bytes) -> str:
    """A secret's version: the SHA-256 of its age file, so a build needs no key."""
    return hashlib.sha256(data).hexdigest()


def encrypt(value: str, recipients: list[Recipient]) -> bytes:
    return bytes(pyrage.encrypt(value.encode(), [r.key() for r in recipients]))


@attrs.frozen
class Stanza:
    kind: str
    args: tuple[str, ...]


def _dearmor(data: bytes, where: str) -> bytes:
    lines = data.strip().splitlines()
    if lines[0].strip() != ARMOR_BEGIN or lines[-1].strip() != ARMOR_END:
        raise SecretsError(f"{where}: not an age file (a broken armored file)")
    try:
        return base64.b64decode(b"".join(ln.strip() for ln in lines[1:-1]), validate=True)
    except binascii.Error:
        raise SecretsError(f"{where}: not an age file (bad base64 in the armor)") from None


def stanzas(data: bytes, where: str) -> list[Stanza]:
    """The recipient stanzas of an age file's header (grease stanzas left out)."""
    if data.lstrip().startswith(ARMOR_BEGIN):
        data = _dearmor(data, where)
    if not data.startswith(MAGIC):
        raise SecretsError(
            f"{where}: not an age file (it does not start with age-encryption.org/v1); "
            "restore it from git"
        )
    end = data.find(b"\n--- ", 0, HEADER_LIMIT)
    if end < 0:
        raise SecretsError(f"{where}: a broken age header; restore it from git")
    try:
        text = data[len(MAGIC) : end].decode("ascii")
    except UnicodeDecodeError:
        raise SecretsError(f"{where}: a broken age header; restore it from git") from None
    found = []
    for line in text.split("\n"):
        if line.startswith("-> "):
            words = line[3:].split(" ")
            if not words[0].endswith("-grease"):
                found.append(Stanza(words[0], tuple(words[1:])))
    return found


def coverage(data: bytes, recipients: list[Recipient], where: str) -> list[str]:
    """What differs between a file's stanzas and its recipients list; empty when they match."""
    found = stanzas(data, where)
    kinds = {s.kind for s in found}
    if "scrypt" in kinds:
        return ["is encrypted to a passphrase alone, not to the recipients"]
    out = []
    want_tags = {r.tag: r for r in recipients if r.tag is not None}
    have_tags = {s.args[0] for s in found if s.kind in SSH_TYPES and s.args}
    out += [f"is not encrypted to {r.shown()}" for t, r in want_tags.items() if t not in have_tags]
    unnamed = sorted(have_tags - set(want_tags))
    stand_ins = [r for r in recipients if r.host_key is not None]  # host keys not known here
    out += [f"is not encrypted to {r.shown()}" for r in stand_ins[len(unnamed) :]]
    out += [
        f"is encrypted to an SSH key that is not listed (tag {t})"
        for t in unnamed[len(stand_ins) :]
    ]
    want_age = sum(1 for r in recipients if r.kind == "X25519")
    have_age = sum(1 for s in found if s.kind == "X25519")
    if want_age != have_age:
        out.append(f"is encrypted to {have_age} age keys, and {want_age} are listed")
    other = sorted(kinds - {"X25519", *SSH_TYPES})
    if other:
        out.append(f"has recipients bundle does not list ({', '.join(other)})")
    return out
