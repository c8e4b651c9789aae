"""Secrets files: per-host encrypted values in the repository, and their keyed fingerprints.

    stacks/secrets/HOST.enc     the secrets of one host
    stacks/secrets/shared.enc   secrets every host may use (a host's own file wins on a name)
    stacks/secrets/config.toml  optional: passphrase_command = "pass show bundle/{file}"

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
import contextlib
import getpass
import hashlib
import hmac
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from activate import strict_json
from builder.errors import InputError
from builder.names import NAME, NAME_HINT

MAGIC = "bundle-secrets 1"
SECRETS_DIR = "secrets"
SHARED = "shared"
CONFIG_FILE = "config.toml"
LOG2N_DEFAULT = 17  # 128 MiB, about 0.3 s
LOG2N_RANGE = range(10, 19)  # at most 256 MiB: a file may only ask for what bundle would write
SCRYPT_R, SCRYPT_P = 8, 1
LOG2N_ENV = "BUNDLE_SECRETS_KDF_LOG2N"  # encryption only; the tests use a cheap work factor
PAD = 512
CHECK_LABEL = b"bundle-secrets passphrase check"
PROMPT_TRIES = 3
COMMAND_TIMEOUT = 120

# The header lines exactly as `encrypt` writes them: nothing else reaches the key derivation.
B64_16, B64_12 = r"[A-Za-z0-9+/]{22}==", r"[A-Za-z0-9+/]{16}"
KDF_LINE = re.compile(
    rf"kdf: scrypt log2n=([0-9]{{1,2}}) r=([0-9]{{1,2}}) p=([0-9]{{1,2}}) salt=({B64_16})"
)
CHECK_LINE = re.compile(rf"check: ({B64_16})")
CIPHER_LINE = re.compile(rf"cipher: aes-256-gcm nonce=({B64_12})")
MARKER_RE = re.compile(rb"@@bundle-secret:([a-z0-9][a-z0-9_-]{0,62})@@")
ALTERED_RE = re.compile(rb"(?i)bundle-secret")  # a marker a template filter changed


def marker(name: str) -> str:
    """What `{{ secret("name") }}` leaves in a bundle file; the switcher fills it in."""
    return f"@@bundle-secret:{name}@@"


class SecretsError(InputError):
    """A secrets file cannot be read or written: exit 2, one line."""


class WrongPassphrase(SecretsError):
    pass


def check_name(name: str, where: str = "secret name") -> str:
    if not NAME.fullmatch(name):
        raise SecretsError(f"{where}: invalid secret name {name!r}: {NAME_HINT}")
    return name


def secrets_dir(stacks_dir: Path) -> Path:
    return stacks_dir / SECRETS_DIR


def file_path(stacks_dir: Path, label: str) -> Path:
    return secrets_dir(stacks_dir) / f"{label}.enc"


def shown(path: Path, stacks_dir: Path) -> str:
    try:
        return str(Path(stacks_dir.name) / path.relative_to(stacks_dir))
    except ValueError:
        return str(path)


def fingerprint(key: bytes, host: str, name: str, value: str) -> str:
    host_key = hmac.new(key, b"bundle fingerprint key\0" + host.encode(), hashlib.sha256).digest()
    message = b"bundle secret\0" + name.encode() + b"\0" + value.encode()
    return hmac.new(host_key, message, hashlib.sha256).hexdigest()


# --- the file format ------------------------------------------------------------------------


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
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    material = Scrypt(salt=salt, length=64, n=2**log2n, r=r, p=p).derive(passphrase.encode())
    return material[:32], material[32:]


def _check_value(check_key: bytes) -> bytes:
    return hmac.new(check_key, CHECK_LABEL, hashlib.sha256).digest()[:16]


def _work_factor() -> int:
    text = os.environ.get(LOG2N_ENV)
    if not text:
        return LOG2N_DEFAULT
    if not text.isdigit() or int(text) not in LOG2N_RANGE:
        raise SecretsError(
            f"${LOG2N_ENV}={text!r}: give a number from {LOG2N_RANGE[0]} to {LOG2N_RANGE[-1]}"
        )
    return int(text)


def encrypt(contents: Contents, label: str, passphrase: str) -> bytes:
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


# --- passphrases ----------------------------------------------------------------------------


def _env_name(label: str) -> str:
    return "BUNDLE_PASSPHRASE_" + re.sub(r"[^A-Z0-9]", "_", label.upper())


def can_prompt() -> bool:
    if not sys.stderr.isatty():
        return False
    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError:
        return False
    os.close(fd)
    return True


@dataclass
class Passphrases:
    """Where a secrets file's passphrase comes from, first that gives one wins:

    $BUNDLE_PASSPHRASE_<LABEL>, $BUNDLE_PASSPHRASE, $BUNDLE_PASSPHRASE_COMMAND,
    passphrase_command in stacks/secrets/config.toml ([files.LABEL] first, `{file}` replaced
    by the label), and finally a prompt on the terminal.
    """

    stacks_dir: Path

    def config(self) -> dict[str, Any]:
        path = secrets_dir(self.stacks_dir) / CONFIG_FILE
        if not path.is_file():
            return {}
        try:
            data = tomllib.loads(path.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise SecretsError(f"{shown(path, self.stacks_dir)}: {exc}") from None
        return data

    def command_for(self, label: str) -> tuple[str, str] | None:
        env = os.environ.get("BUNDLE_PASSPHRASE_COMMAND")
        if env:
            return env.replace("{file}", label), "$BUNDLE_PASSPHRASE_COMMAND"
        cfg = self.config()
        where = shown(secrets_dir(self.stacks_dir) / CONFIG_FILE, self.stacks_dir)
        per_file = cfg.get("files", {}).get(label, {}) if isinstance(cfg.get("files"), dict) else {}
        command = per_file.get("passphrase_command") if isinstance(per_file, dict) else None
        if command is None:
            command = cfg.get("passphrase_command")
        if command is None:
            return None
        if not isinstance(command, str) or not command.strip():
            raise SecretsError(f"{where}: passphrase_command must be a non-empty string")
        return command.replace("{file}", label), f"passphrase_command in {where}"

    def given(self, label: str) -> tuple[str, str] | None:
        """A passphrase that needs no prompt, and where it came from."""
        for name in (_env_name(label), "BUNDLE_PASSPHRASE"):
            value = os.environ.get(name)
            if value:
                return value, f"${name}"
        found = self.command_for(label)
        if found is None:
            return None
        command, source = found
        return run_command(command, source), f"`{command}`"

    def prompt(self, where: str, new: bool = False) -> str:
        if new:
            first = getpass.getpass(f"New passphrase for {where}: ")
            if not first:
                raise SecretsError(f"{where}: an empty passphrase is not allowed")
            if getpass.getpass(f"Repeat the passphrase for {where}: ") != first:
                raise SecretsError(f"{where}: the two passphrases differ; nothing was written")
            return first
        return getpass.getpass(f"Passphrase for {where}: ")

    def none_available(self, label: str, where: str) -> SecretsError:
        return SecretsError(
            f"{where}: no passphrase: set ${_env_name(label)} or $BUNDLE_PASSPHRASE, set "
            f"passphrase_command in {shown(secrets_dir(self.stacks_dir) / CONFIG_FILE, self.stacks_dir)}, "
            "or run on a terminal"
        )


def run_command(command: str, source: str) -> str:
    try:
        done = subprocess.run(
            ["sh", "-c", command],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise SecretsError(
            f"`{command}` ({source}) did not finish in {COMMAND_TIMEOUT} s"
        ) from None
    if done.returncode != 0:
        err = [ln for ln in done.stderr.decode(errors="replace").splitlines() if ln.strip()]
        raise SecretsError(
            f"`{command}` ({source}) failed with exit {done.returncode}"
            + (f": {err[-1].strip()}" if err else "")
        )
    first = done.stdout.decode(errors="replace").split("\n", 1)[0].rstrip("\r")
    if not first:
        raise SecretsError(f"`{command}` ({source}) printed no passphrase")
    return first


# --- opening and saving files ---------------------------------------------------------------


@dataclass
class SecretsFile:
    """One decrypted secrets file, and what it takes to write it back."""

    path: Path
    label: str
    where: str
    passphrase: str
    contents: Contents
    exists: bool = True

    @property
    def values(self) -> dict[str, str]:
        return self.contents.values

    def save(self, passphrase: str | None = None) -> None:
        if passphrase is not None:
            self.passphrase = passphrase
        data = encrypt(self.contents, self.label, self.passphrase)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o644)  # ciphertext: it goes into git anyway
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        self.exists = True
        _CACHE[self.path.resolve()] = (data, self)


_CACHE: dict[Path, tuple[bytes, SecretsFile]] = {}
# A fleet pushes from several threads: one prompt at a time, and the others then find the file
# already open (or the typed passphrase) instead of asking again.
_OPENING = threading.RLock()


def open_file(stacks_dir: Path, label: str, create: bool = False) -> SecretsFile | None:
    """Decrypt stacks/secrets/LABEL.enc (once per process); None if it does not exist.

    With create=True a missing file comes back empty, with a passphrase for it (asked twice
    at a prompt), ready for `save()`.
    """
    with _OPENING:
        return _open_file(stacks_dir, label, create)


def _open_file(stacks_dir: Path, label: str, create: bool) -> SecretsFile | None:
    path = file_path(stacks_dir, label)
    where = shown(path, stacks_dir)
    passphrases = Passphrases(stacks_dir)
    if not path.is_file():
        if not create:
            return None
        got = passphrases.given(label)
        if got is None:
            if not can_prompt():
                raise passphrases.none_available(label, where)
            passphrase = passphrases.prompt(where, new=True)
        else:
            passphrase = got[0]
        return SecretsFile(path, label, where, passphrase, Contents.new(), exists=False)
    data = path.read_bytes()
    cached = _CACHE.get(path.resolve())
    if cached is not None and cached[0] == data:
        return cached[1]
    tried: list[str] = []
    if cached is not None:
        tried.append(cached[1].passphrase)
    tried += [p for p in _TYPED if p not in tried]
    for candidate in tried:  # passphrases this process already knows (the same one is common)
        with contextlib.suppress(WrongPassphrase):
            return _remember(path, data, label, where, candidate, stacks_dir)
    got = passphrases.given(label)
    if got is not None:
        passphrase, source = got
        try:
            return _remember(path, data, label, where, passphrase, stacks_dir)
        except WrongPassphrase:
            raise WrongPassphrase(
                f"{where}: wrong passphrase (from {source}); nothing was built or changed"
            ) from None
    if not can_prompt():
        raise passphrases.none_available(label, where)
    for attempt in range(PROMPT_TRIES):
        passphrase = passphrases.prompt(where)
        try:
            found = _remember(path, data, label, where, passphrase, stacks_dir)
        except WrongPassphrase:
            if attempt + 1 < PROMPT_TRIES:
                print(f"{where}: wrong passphrase, try again", file=sys.stderr)
            continue
        _TYPED.append(passphrase)
        return found
    raise WrongPassphrase(f"{where}: wrong passphrase ({PROMPT_TRIES} attempts)")


_TYPED: list[str] = []


def _remember(
    path: Path, data: bytes, label: str, where: str, passphrase: str, stacks_dir: Path
) -> SecretsFile:
    contents = decrypt(data, label, passphrase, where)
    for name in contents.values:
        if not NAME.fullmatch(name):
            raise SecretsError(
                f"{where}: holds an invalid secret name {name!r}; fix it with `bundle secrets edit {label}`"
            )
    found = SecretsFile(path, label, where, passphrase, contents)
    _CACHE[path.resolve()] = (data, found)
    return found


# --- what one host sees ---------------------------------------------------------------------


@dataclass
class HostSecrets:
    """The secrets a host may use: shared.enc, overridden by HOST.enc."""

    host: str
    files: list[SecretsFile]
    where: list[str]

    @property
    def exists(self) -> bool:
        return bool(self.files)

    def source(self, name: str) -> SecretsFile | None:
        for f in reversed(self.files):  # the host's own file comes last and wins
            if name in f.values:
                return f
        return None

    def value(self, name: str) -> str | None:
        f = self.source(name)
        return f.values[name] if f else None

    def fingerprint(self, name: str) -> str | None:
        f = self.source(name)
        if f is None:
            return None
        return fingerprint(f.contents.fingerprint_key, self.host, name, f.values[name])

    def names(self) -> list[str]:
        return sorted({n for f in self.files for n in f.values})


def host_secrets(stacks_dir: Path, host: str) -> HostSecrets:
    files = []
    for label in (SHARED, host):
        found = open_file(stacks_dir, label)
        if found is not None:
            files.append(found)
    where = [shown(file_path(stacks_dir, label), stacks_dir) for label in (host, SHARED)]
    return HostSecrets(host, files, where)


def any_file(stacks_dir: Path, host: str) -> bool:
    return any(file_path(stacks_dir, label).is_file() for label in (SHARED, host))
