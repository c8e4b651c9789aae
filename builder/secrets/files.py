"""Secrets files: per-host encrypted values in the repository, and their keyed fingerprints.

    stacks/secrets/HOST.enc     the secrets of one host
    stacks/secrets/shared.enc   secrets every host may use (a host's own file wins on a name)
    stacks/secrets/config.toml  optional: passphrase_command = "pass show bundle/{file}"

The format of one file, its encryption and its fingerprints are in builder/secrets/fileformat.py.
Every file here is read through builder/stack/stackfiles.py, like the rest of the stack tree.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from builder.secrets.agestore import AgeSecretsFile, label_dir
from builder.secrets.fileformat import (
    Contents,
    SecretsError,
    WrongPassphrase,
    decrypt,
    encrypt,
    fingerprint,
)
from builder.secrets.passphrases import (
    Passphrases,
    can_prompt,
    present,
    secrets_dir,
    shown,
)
from builder.secrets.recipients import label_recipients
from builder.stack import stackfiles
from builder.stack.names import NAME, NAME_HINT

SHARED = "shared"
PROMPT_TRIES = 3
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
    "open_enc",
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


def file_path(stacks_dir: Path, label: str) -> Path:
    return secrets_dir(stacks_dir) / f"{label}.enc"


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


def open_enc(stacks_dir: Path, label: str) -> SecretsFile | None:
    """The .enc file of a label, whatever else exists (what `migrate` reads)."""
    with _OPENING:
        return _open_file(stacks_dir, label, False)


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

    def value_without_prompt(self, name: str) -> str | None:
        """A value a build may look at: an age file only if this machine opens it unasked."""
        f = self.source(name)
        if isinstance(f, AgeSecretsFile):
            return f.readable(name)
        return f.values[name] if f is not None else None

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
