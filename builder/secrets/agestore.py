"""A label's secrets as age files: stacks/secrets/LABEL/NAME.age, one value per file.

A secret's version is the SHA-256 of its file, so building needs no key; a value is decrypted
only when it must travel (push) or be shown to its editor. Writing a value needs only the
recipients (public keys), so `set` and `remove` need no identity either.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import pyrage

from builder.secrets import agefmt, identities
from builder.secrets.fileformat import SecretsError
from builder.secrets.passphrases import Passphrases, can_prompt
from builder.secrets.recipients import label_recipients
from builder.stack import stackfiles
from builder.stack.names import NAME

SUFFIX = ".age"


def label_dir(stacks_dir: Path, label: str) -> Path:
    return stacks_dir / "secrets" / label


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace path with data whole, or leave it as it was (a crash never leaves half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_label(stacks_dir: Path, label: str) -> dict[str, bytes]:
    """Every NAME.age of a label's folder, by name; anything else there is refused, not skipped."""
    folder = label_dir(stacks_dir, label)
    where = stackfiles.shown(folder, stacks_dir)
    if not folder.is_dir() or folder.is_symlink():
        raise SecretsError(f"{where}: must be a folder of NAME.age files, not a file or a link")
    out = {}
    for entry in sorted(folder.iterdir()):
        name = entry.name.removesuffix(SUFFIX)
        if entry.name.startswith("."):
            continue  # an editor's or an interrupted write's leftover, never read
        if not entry.name.endswith(SUFFIX) or not NAME.fullmatch(name):
            raise SecretsError(
                f"{stackfiles.shown(entry, stacks_dir)}: not a secret file: a folder of secrets "
                "holds only NAME.age files (NAME: 1-63 of a-z 0-9 - _); move it away"
            )
        try:
            out[name] = stackfiles.read_bytes(entry, stacks_dir)
        except stackfiles.UnreadableFile as exc:
            raise SecretsError(str(exc.problem)) from None
    return out


class AgeValues(MutableMapping[str, str]):
    """A label's values, decrypted one by one only when read; writes are kept until save()."""

    def __init__(self, owner: AgeSecretsFile) -> None:
        self._owner = owner
        self._known: dict[str, str] = {}
        self._names = set(owner.files)

    def __getitem__(self, name: str) -> str:
        if name not in self._names:
            raise KeyError(name)
        if name not in self._known:
            self._known[name] = self._owner.decrypt(name)
        return self._known[name]

    def __setitem__(self, name: str, value: str) -> None:
        self._names.add(name)
        self._known[name] = value

    def __delitem__(self, name: str) -> None:
        self._names.remove(name)
        self._known.pop(name, None)

    def __contains__(self, name: object) -> bool:
        return name in self._names  # without decrypting

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._names))

    def __len__(self) -> int:
        return len(self._names)

    def written(self) -> dict[str, str]:
        return {n: v for n, v in self._known.items() if n in self._names}


class AgeSecretsFile:
    """One label in the age format, with the same face as SecretsFile (values, save())."""

    kind = "age"

    def __init__(self, stacks_dir: Path, label: str, exists: bool = True) -> None:
        self.stacks_dir = stacks_dir
        self.label = label
        self.path = label_dir(stacks_dir, label)
        self.where = stackfiles.shown(self.path, stacks_dir) + "/"
        self.exists = exists
        self.files = read_label(stacks_dir, label) if exists else {}
        self._values: MutableMapping[str, str] = AgeValues(self)

    # the face SecretsFile has ----------------------------------------------------------------

    @property
    def values(self) -> MutableMapping[str, str]:
        return self._values

    @values.setter
    def values(self, new: MutableMapping[str, str]) -> None:
        self._values = new

    @property
    def contents(self) -> AgeSecretsFile:
        return self  # `f.contents.values = {...}` replaces every value, as for a .enc file

    def names(self) -> set[str]:
        return set(self.files)

    def version(self, host: str, name: str) -> str:
        return agefmt.version(self.files[name])

    def file_of(self, name: str) -> Path:
        return self.path / f"{name}{SUFFIX}"

    def shown_file(self, name: str) -> str:
        return stackfiles.shown(self.file_of(name), self.stacks_dir)

    def decrypt(self, name: str) -> str:
        return decrypt(self.files[name], self.stacks_dir, self.shown_file(name))

    def readable(self, name: str) -> str | None:
        """The value if this machine's own identities open it; None (no prompt) otherwise."""
        try:
            return decrypt(self.files[name], self.stacks_dir, "")
        except SecretsError:
            return None

    def recipients(self) -> list[agefmt.Recipient]:
        found = label_recipients(self.stacks_dir, self.label)
        if not found:
            stack = "every host's stack" if self.label == "shared" else f"stacks/{self.label}.toml"
            raise SecretsError(
                f"{self.label}: no recipients to encrypt to: list them in [secrets] recipients "
                f"of {stack}, or run: bundle secrets recipients add {self.label} KEY"
            )
        if all(r.comment.startswith("host:") for r in found):
            raise SecretsError(
                f"{self.label}: only host keys are recipients, so nobody here could read or edit "
                f"these files; add yours first: bundle secrets recipients add {self.label} KEY"
            )
        return found

    def save(self, passphrase: str | None = None) -> list[str]:
        """Write the names whose value changed, remove the names that went; others untouched.
        The names written."""
        if passphrase is not None:
            raise SecretsError(f"{self.where}: age files have recipients, not a passphrase")
        values = self._values
        written = values.written() if isinstance(values, AgeValues) else dict(values)
        keep = set(values)
        recipients = self.recipients() if written else []
        done = []
        for name, value in sorted(written.items()):
            if name in self.files and _same(self.files[name], value, self):
                continue
            data = agefmt.encrypt(value, recipients)
            write_atomic(self.file_of(name), data)
            self.files[name] = data
            done.append(name)
        for name in sorted(set(self.files) - keep):
            self.file_of(name).unlink()
            del self.files[name]
        self.exists = True
        self._values = AgeValues(self)
        return done

    def reencrypt(self, recipients: list[agefmt.Recipient]) -> list[str]:
        """Encrypt every value again to `recipients` (needs an identity); the names written."""
        done = []
        for name in sorted(self.files):
            data = agefmt.encrypt(self.decrypt(name), recipients)
            write_atomic(self.file_of(name), data)
            self.files[name] = data
            done.append(name)
        return done


def _same(data: bytes, value: str, owner: AgeSecretsFile) -> bool:
    """Whether a file already holds value; unknown (no identity) counts as different."""
    try:
        return decrypt(data, owner.stacks_dir, "") == value
    except SecretsError:
        return False


def _ask(stacks_dir: Path) -> Any:
    def ask(where: str) -> str:
        got = Passphrases(stacks_dir).given("recovery")
        if got is not None:
            return got[0]
        if not can_prompt():
            raise SecretsError(
                f"{where}: no passphrase for the recovery key: set $BUNDLE_PASSPHRASE_RECOVERY "
                "or run on a terminal"
            )
        return Passphrases(stacks_dir).prompt(where)

    return ask


def decrypt(data: bytes, stacks_dir: Path, where: str) -> str:
    """A value, with the machine's identities, else the recovery key (which asks a passphrase)."""
    own = identities.own_identities()
    with contextlib.suppress(pyrage.DecryptError):
        if own:
            return _text(bytes(pyrage.decrypt(data, own)), where)
    if where:
        agefmt.stanzas(data, where)  # a file that is no age file says so, not "no identity"
    recovery = identities.recovery_identity(stacks_dir, _ask(stacks_dir)) if where else []
    if recovery:
        with contextlib.suppress(pyrage.DecryptError):
            return _text(bytes(pyrage.decrypt(data, recovery)), where)
    raise SecretsError(identities.none_found(where or "a secret"))


def _text(plain: bytes, where: str) -> str:
    try:
        return plain.decode("utf-8")
    except UnicodeDecodeError:
        raise SecretsError(f"{where}: the value is not UTF-8 text") from None
