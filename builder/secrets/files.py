"""Secrets files: per-host encrypted values in the repository, and their keyed fingerprints.

    stacks/secrets/HOST.enc     the secrets of one host
    stacks/secrets/shared.enc   secrets every host may use (a host's own file wins on a name)
    stacks/secrets/config.toml  optional: passphrase_command = "pass show bundle/{file}"

The format of one file, its encryption and its fingerprints are in builder/secrets/fileformat.py.
Every file here is read through builder/stack/stackfiles.py, like the rest of the stack tree.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import re
import subprocess
import sys
import tempfile
import threading
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builder.secrets.agestore import AgeSecretsFile, label_dir
from builder.secrets.fileformat import (
    Contents,
    SecretsError,
    WrongPassphrase,
    decrypt,
    encrypt,
    fingerprint,
)
from builder.secrets.recipients import label_recipients
from builder.stack import stackfiles
from builder.stack.names import NAME, NAME_HINT

SECRETS_DIR = "secrets"
SHARED = "shared"
CONFIG_FILE = "config.toml"
PROMPT_TRIES = 3
COMMAND_TIMEOUT = 120
MARKER_RE = re.compile(rb"@@bundle-secret:([a-z0-9][a-z0-9_-]{0,62})@@")
ALTERED_RE = re.compile(rb"(?i)bundle-secret")  # a marker a template filter changed
# Names other modules take from here; the format's own live in secrets_format.
__all__ = [
    "ALTERED_RE",
    "MARKER_RE",
    "SHARED",
    "AgeSecretsFile",
    "AnyFile",
    "Contents",
    "HostSecrets",
    "Passphrases",
    "SecretsError",
    "SecretsFile",
    "WrongPassphrase",
    "any_file",
    "can_prompt",
    "check_name",
    "decrypt",
    "encrypt",
    "file_path",
    "fingerprint",
    "host_secrets",
    "label_dir",
    "label_format",
    "label_shown",
    "marker",
    "open_file",
    "shown",
]


def marker(name: str) -> str:
    """What `{{ secret("name") }}` leaves in a bundle file; the switcher fills it in."""
    return f"@@bundle-secret:{name}@@"


def check_name(name: str, where: str = "secret name") -> str:
    if not NAME.fullmatch(name):
        raise SecretsError(f"{where}: invalid secret name {name!r}: {NAME_HINT}")
    return name


def secrets_dir(stacks_dir: Path) -> Path:
    return stacks_dir / SECRETS_DIR


def file_path(stacks_dir: Path, label: str) -> Path:
    return secrets_dir(stacks_dir) / f"{label}.enc"


def present(path: Path) -> bool:
    """Something is there: a folder or a dangling symlink is refused when read, not skipped."""
    return os.path.lexists(path)


def shown(path: Path, stacks_dir: Path) -> str:
    try:
        return str(Path(stacks_dir.name) / path.relative_to(stacks_dir))
    except ValueError:
        return str(path)


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
        if not present(path):
            return {}
        try:
            data = tomllib.loads(stackfiles.read_text(path, self.stacks_dir))
        except stackfiles.UnreadableFile as exc:
            raise SecretsError(str(exc.problem)) from None
        except tomllib.TOMLDecodeError as exc:
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

    kind = "enc"

    @property
    def values(self) -> dict[str, str]:
        return self.contents.values

    def names(self) -> set[str]:
        return set(self.contents.values)

    def version(self, host: str, name: str) -> str:
        return fingerprint(self.contents.fingerprint_key, host, name, self.values[name])

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


AnyFile = SecretsFile | AgeSecretsFile
_CACHE: dict[Path, tuple[bytes, SecretsFile]] = {}
# A fleet pushes from several threads: one prompt at a time, and the others then find the file
# already open (or the typed passphrase) instead of asking again.
_OPENING = threading.RLock()


def open_file(stacks_dir: Path, label: str, create: bool = False) -> AnyFile | None:
    """A label's secrets: the folder of age files, or stacks/secrets/LABEL.enc (decrypted once
    per process); None if neither exists.

    With create=True a missing label comes back empty, ready for `save()`: as age files when
    the stacks list recipients for it, else as a .enc file with a passphrase (asked twice).
    """
    with _OPENING:
        fmt = label_format(stacks_dir, label)
        if fmt == "age":
            return AgeSecretsFile(stacks_dir, label)
        if fmt is None and create and label_recipients(stacks_dir, label):
            return AgeSecretsFile(stacks_dir, label, exists=False)
        return _open_file(stacks_dir, label, create)


def label_format(stacks_dir: Path, label: str) -> str | None:
    """ "age", "enc" or None (no secrets yet); both at once is a migration to finish."""
    enc = present(file_path(stacks_dir, label))
    age = present(label_dir(stacks_dir, label))
    if enc and age:
        where = shown(file_path(stacks_dir, label), stacks_dir)
        raise SecretsError(
            f"{where} and {shown(label_dir(stacks_dir, label), stacks_dir)}/ both exist: a "
            f"migration was interrupted; finish it: bundle secrets migrate {label}"
        )
    return "age" if age else "enc" if enc else None


def _open_file(stacks_dir: Path, label: str, create: bool) -> SecretsFile | None:
    path = file_path(stacks_dir, label)
    where = shown(path, stacks_dir)
    passphrases = Passphrases(stacks_dir)
    if not present(path):
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
    try:
        data = stackfiles.read_bytes(path, stacks_dir)
    except stackfiles.UnreadableFile as exc:
        raise SecretsError(str(exc.problem)) from None
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
    files: list[AnyFile]
    where: list[str]

    @property
    def exists(self) -> bool:
        return bool(self.files)

    def source(self, name: str) -> AnyFile | None:
        for f in reversed(self.files):  # the host's own file comes last and wins
            if name in f.names():
                return f
        return None

    def value(self, name: str) -> str | None:
        f = self.source(name)
        return f.values[name] if f else None

    def fingerprint(self, name: str) -> str | None:
        f = self.source(name)
        return f.version(self.host, name) if f is not None else None

    def names(self) -> list[str]:
        return sorted({n for f in self.files for n in f.names()})


def host_secrets(stacks_dir: Path, host: str) -> HostSecrets:
    files = []
    for label in (SHARED, host):
        found = open_file(stacks_dir, label)
        if found is not None:
            files.append(found)
    where = [label_shown(stacks_dir, label) for label in (host, SHARED)]
    return HostSecrets(host, files, where)


def label_shown(stacks_dir: Path, label: str) -> str:
    """The label's file or folder as the user knows it (the .enc file unless there are age files)."""
    folder = shown(label_dir(stacks_dir, label), stacks_dir) + "/"
    if present(label_dir(stacks_dir, label)):
        return folder
    if present(file_path(stacks_dir, label)) or not label_recipients_quiet(stacks_dir, label):
        return shown(file_path(stacks_dir, label), stacks_dir)
    return folder


def label_recipients_quiet(stacks_dir: Path, label: str) -> bool:
    try:
        return bool(label_recipients(stacks_dir, label))
    except SecretsError:
        return False


def any_file(stacks_dir: Path, host: str) -> bool:
    return any(
        present(file_path(stacks_dir, label)) or present(label_dir(stacks_dir, label))
        for label in (SHARED, host)
    )
