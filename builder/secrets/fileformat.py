"""The secrets file format: its header, its encryption and the work factors it may ask for.

A file is text: a short header and the base64 of an AES-256-GCM ciphertext (docs/secrets.md):

    bundle-secrets 1
    file: vps1
    kdf: scrypt log2n=17 r=8 p=1 salt=<base64, 16 bytes>
    check: <base64, 16 bytes>
    cipher: aes-256-gcm nonce=<base64, 12 bytes>
    --
    <base64 of ciphertext + tag, 64 columns>

scrypt(passphrase, salt) gives 64 bytes: the first 32 are the AES key, the last 32 the check
key. `check` = HMAC-SHA256(check key, "bundle-secrets passphrase check")[:16] tells a wrong
passphrase from a modified file. The header lines (canonical: joined with "\\n") are the
associated data, so changing the label, the KDF parameters or the nonce is detected too. The
plaintext is JSON, padded with spaces to a multiple of 512 bytes:
{"fingerprint_key": <base64, 32 random bytes>, "secrets": {NAME: VALUE}}.

Fingerprints: HMAC-SHA256(HMAC-SHA256(fingerprint_key, "bundle fingerprint key\\0" + HOST),
"bundle secret\\0" + NAME + "\\0" + VALUE). The key lives inside the encrypted file, so a
fingerprint in a manifest cannot be brute-forced back into a short value, it stays the same
when the file is re-encrypted or its passphrase changes, and each host sees other fingerprints.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import re
from dataclasses import dataclass, field

from activate import strict_json
from builder.base.errors import InputError

MAGIC = "bundle-secrets 1"
LOG2N_DEFAULT = 17  # 128 MiB, about 0.3 s
LOG2N_RANGE = range(10, 19)  # at most 256 MiB: a file may only ask for what bundle would write
SCRYPT_R, SCRYPT_P = 8, 1
LOG2N_ENV = "BUNDLE_SECRETS_KDF_LOG2N"  # encryption only; the tests use a cheap work factor
PAD = 512
CHECK_LABEL = b"bundle-secrets passphrase check"

# The header lines exactly as `encrypt` writes them: nothing else reaches the key derivation.
B64_16, B64_12 = r"[A-Za-z0-9+/]{22}==", r"[A-Za-z0-9+/]{16}"
KDF_LINE = re.compile(
    rf"kdf: scrypt log2n=([0-9]{{1,2}}) r=([0-9]{{1,2}}) p=([0-9]{{1,2}}) salt=({B64_16})"
)
CHECK_LINE = re.compile(rf"check: ({B64_16})")
CIPHER_LINE = re.compile(rf"cipher: aes-256-gcm nonce=({B64_12})")


class SecretsError(InputError):
    """A secrets file cannot be read or written: exit 2, one line."""


class WrongPassphrase(SecretsError):
    pass


def fingerprint(key: bytes, host: str, name: str, value: str) -> str:
    host_key = hmac.new(key, b"bundle fingerprint key\0" + host.encode(), hashlib.sha256).digest()
    message = b"bundle secret\0" + name.encode() + b"\0" + value.encode()
    return hmac.new(host_key, message, hashlib.sha256).hexdigest()


@dataclass
class Contents:
    fingerprint_key: bytes
    values: dict[str, str] = field(default_factory=dict)

    @classmethod
    def new(cls) -> Contents:
        return cls(os.urandom(32), {})


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str, where: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise SecretsError(f"{where}: not base64") from None


def _derive(passphrase: str, salt: bytes, log2n: int, r: int, p: int) -> tuple[bytes, bytes]:
    # start-up: cryptography costs ~10 ms, paid only when a secret is read or written
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    material = Scrypt(salt=salt, length=64, n=2**log2n, r=r, p=p).derive(passphrase.encode())
    return material[:32], material[32:]


def _check_value(check_key: bytes) -> bytes:
    return hmac.new(check_key, CHECK_LABEL, hashlib.sha256).digest()[:16]


def _work_factor() -> int:
    text = os.environ.get(LOG2N_ENV)
    if not text:
        return LOG2N_DEFAULT
    if not re.fullmatch(r"[0-9]{1,2}", text) or int(text) not in LOG2N_RANGE:
        raise SecretsError(
            f"${LOG2N_ENV}={text!r}: give a number from {LOG2N_RANGE[0]} to {LOG2N_RANGE[-1]}"
        )
    return int(text)


def encrypt(contents: Contents, label: str, passphrase: str) -> bytes:
    # start-up: cryptography costs ~10 ms, paid only when a secret is read or written
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    log2n, r, p = _work_factor(), SCRYPT_R, SCRYPT_P
    salt, nonce = os.urandom(16), os.urandom(12)
    key, check_key = _derive(passphrase, salt, log2n, r, p)
    header = [
        MAGIC,
        f"file: {label}",
        f"kdf: scrypt log2n={log2n} r={r} p={p} salt={_b64(salt)}",
        f"check: {_b64(_check_value(check_key))}",
        f"cipher: aes-256-gcm nonce={_b64(nonce)}",
    ]
    plain = json.dumps(
        {"fingerprint_key": _b64(contents.fingerprint_key), "secrets": contents.values},
        sort_keys=True,
        ensure_ascii=False,
    ).encode()
    plain += b" " * (-len(plain) % PAD)
    sealed = AESGCM(key).encrypt(nonce, plain, "\n".join(header).encode())
    body = _b64(sealed)
    lines = [*header, "--", *(body[i : i + 64] for i in range(0, len(body), 64))]
    return ("\n".join(lines) + "\n").encode()


def _header_line(pattern: re.Pattern[str], line: str, what: str, where: str) -> re.Match[str]:
    found = pattern.fullmatch(line)
    if found is None:
        shown = line if len(line) <= 80 else line[:80] + "..."
        raise SecretsError(
            f"{where}: damaged header ({what} line {shown!r} is not what bundle writes); "
            "restore it from git"
        )
    return found


def _scrypt_params(kdf: re.Match[str], where: str) -> tuple[int, int, int]:
    """The work factors of a kdf line, refused before any key derivation when they ask for
    more memory or time than bundle itself writes (a tampered file must not allocate GiBs)."""
    log2n, r, p = int(kdf[1]), int(kdf[2]), int(kdf[3])
    if log2n not in LOG2N_RANGE or not 1 <= r <= SCRYPT_R or not 1 <= p <= SCRYPT_P:
        raise SecretsError(
            f"{where}: the kdf line asks for scrypt log2n={log2n} r={r} p={p}; bundle writes "
            f"log2n {LOG2N_RANGE[0]}-{LOG2N_RANGE[-1]}, r={SCRYPT_R}, p={SCRYPT_P} (at most "
            f"{128 * SCRYPT_R * 2 ** LOG2N_RANGE[-1] >> 20} MiB): restore it from git"
        )
    return log2n, r, p


def decrypt(data: bytes, label: str, passphrase: str, where: str) -> Contents:
    """The contents of a secrets file; SecretsError says what is wrong in one line."""
    # start-up: cryptography costs ~10 ms, paid only when a secret is read or written
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    try:
        lines = [ln.rstrip("\r") for ln in data.decode("ascii").split("\n")]
    except UnicodeDecodeError:
        raise SecretsError(
            f"{where}: not a bundle secrets file (not text); restore it from git"
        ) from None
    if not lines or lines[0] != MAGIC:
        raise SecretsError(
            f"{where}: not a bundle secrets file (the first line is not {MAGIC!r}); "
            "restore it from git"
        )
    if len(lines) < 7 or lines[5] != "--":
        raise SecretsError(
            f"{where}: damaged header (expected 5 lines and '--'); restore it from git"
        )
    header = lines[:5]
    if not header[1].startswith("file: "):
        raise SecretsError(f"{where}: damaged header (no 'file:' line); restore it from git")
    owner = header[1][len("file: ") :]
    if owner != label:
        raise SecretsError(
            f"{where} holds the secrets of {owner!r}, not of {label!r}; a file was copied or "
            "renamed: restore it from git"
        )
    kdf = _header_line(KDF_LINE, header[2], "the kdf", where)
    log2n, r, p = _scrypt_params(kdf, where)
    salt = _unb64(kdf[4], f"{where}: salt")
    check = _unb64(_header_line(CHECK_LINE, header[3], "the check", where)[1], f"{where}: check")
    nonce = _unb64(_header_line(CIPHER_LINE, header[4], "the cipher", where)[1], f"{where}: nonce")
    sealed = _unb64("".join(ln.strip() for ln in lines[6:]), f"{where}: body")
    key, check_key = _derive(passphrase, salt, log2n, r, p)
    if not hmac.compare_digest(_check_value(check_key), check):
        raise WrongPassphrase(f"{where}: wrong passphrase")
    try:
        plain = AESGCM(key).decrypt(nonce, sealed, "\n".join(header).encode())
    except InvalidTag:
        raise SecretsError(
            f"{where}: the file was changed after it was encrypted (authentication failed); "
            f"restore it from git (git checkout -- {where})"
        ) from None
    try:
        payload = strict_json.loads(plain, where, "", limit=len(plain))
        values = payload["secrets"]
        fp_key = base64.b64decode(payload["fingerprint_key"], validate=True)
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise SecretsError(
            f"{where}: decrypted, but the contents are not valid; restore it from git"
        ) from None
    if not isinstance(values, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in values.items()
    ):
        raise SecretsError(
            f"{where}: decrypted, but the contents are not valid; restore it from git"
        )
    return Contents(fp_key, dict(values))
