"""`bundle secrets edit|set|list|remove|rekey HOST`: the encrypted secrets files.

HOST is a host name (stacks/secrets/HOST.enc) or `shared` (stacks/secrets/shared.enc, seen by
every host). Values are printed nowhere: `list` shows names, the others say what changed.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import os
import shlex
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

from builder.base.errors import InputError
from builder.commands.common import paths_from
from builder.deploy.hostkey import pinned_host_key
from builder.secrets.files import (
    SHARED,
    AgeSecretsFile,
    AnyFile,
    Passphrases,
    SecretsError,
    can_prompt,
    check_name,
    file_path,
    host_secrets,
    open_file,
    shown,
)
from builder.secrets.recipients import use_host_keys
from builder.stack.names import NAME, NAME_HINT

VALUE_LIMIT = 512000  # podman's limit for one secret

EDIT_HEADER = """\
# Secrets of {label}, decrypted from {where} into a temporary file (mode 0600) that is
# removed when you are done. One NAME = "value" per line (TOML); '''...''' holds a value over
# several lines. Names: 1-63 of a-z 0-9 - _. Save and quit to encrypt again.
"""


# --- the temporary file for `edit` ----------------------------------------------------------


def toml_string(value: str) -> str:
    plain = all(ch in "\n\t" or (ord(ch) >= 0x20 and ord(ch) != 0x7F) for ch in value)
    if "\n" in value and plain and "'''" not in value and not value.endswith("'"):
        return "'''\n" + value + "'''"
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")


def to_toml(values: dict[str, str], label: str, where: str) -> str:
    lines = [EDIT_HEADER.format(label=label, where=where)]
    lines += [f"{name} = {toml_string(values[name])}" for name in sorted(values)]
    return "\n".join(lines) + "\n"


def from_toml(text: str) -> dict[str, str]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SecretsError(f"not valid TOML: {exc}") from None
    out = {}
    for name, value in data.items():
        if not NAME.fullmatch(name):
            raise SecretsError(f"invalid secret name {name!r}: {NAME_HINT}")
        if not isinstance(value, str):
            raise SecretsError(f"{name}: the value must be a string in quotes")
        if not value:
            raise SecretsError(f"{name}: empty value; remove the line to remove the secret")
        if len(value.encode()) > VALUE_LIMIT:
            raise SecretsError(f"{name}: the value is over {VALUE_LIMIT} bytes (podman's limit)")
        out[name] = value
    return out


def _private_dir() -> str:
    shm = "/dev/shm"  # memory, not disk, where there is one
    base = shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None
    return tempfile.mkdtemp(prefix="bundle-secrets-", dir=base)


def _scrub(path: Path) -> None:
    with contextlib.suppress(OSError):
        size = path.stat().st_size
        with open(path, "r+b") as fh:
            fh.write(b"\0" * size)
            fh.flush()
            os.fsync(fh.fileno())


def edit_values(values: dict[str, str], label: str, where: str) -> dict[str, str] | None:
    """Open $VISUAL/$EDITOR on a 0600 copy; the new values, or None if the editor failed."""
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    folder = Path(_private_dir())
    path = folder / f"{label}.toml"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(to_toml(values, label, where))
        while True:
            try:
                done = subprocess.run([*shlex.split(editor), str(path)], check=False)
            except FileNotFoundError:
                raise InputError(
                    f"editor {editor!r} not found; set $EDITOR (nothing was changed)"
                ) from None
            if done.returncode != 0:
                raise InputError(
                    f"the editor exited with {done.returncode}; {where} was not changed"
                )
            try:
                return from_toml(path.read_text())
            except (SecretsError, UnicodeDecodeError) as exc:
                if not can_prompt():
                    raise SecretsError(f"{where} was not changed: {exc}") from None
                print(f"error: {exc}", file=sys.stderr)
                print("edit again? [Y/n] ", end="", file=sys.stderr, flush=True)  # not on stdout
                answer = input().strip().lower()
                if answer.startswith("n"):
                    raise SecretsError(f"{where} was not changed") from None
    finally:
        for leftover in folder.rglob("*"):
            if leftover.is_file():
                _scrub(leftover)
        for leftover in sorted(folder.rglob("*"), reverse=True):
            with contextlib.suppress(OSError):
                leftover.unlink() if not leftover.is_dir() else leftover.rmdir()
        with contextlib.suppress(OSError):
            folder.rmdir()


# --- commands -------------------------------------------------------------------------------


def _stacks(args: argparse.Namespace) -> Path:
    return Path(paths_from(args).stacks_dir)


def _label(stacks: Path, label: str) -> str:
    if label != SHARED and not (stacks / f"{label}.toml").is_file():
        raise InputError(
            f"{shown(stacks / (label + '.toml'), stacks)} does not exist: secrets belong to a "
            "host (or to `shared`, seen by every host)"
        )
    return label


def _open(args: argparse.Namespace, create: bool) -> tuple[Path, AnyFile | None]:
    stacks = _stacks(args)
    label = _label(stacks, args.host)
    return stacks, open_file(stacks, label, create=create)


def cmd_edit(args: argparse.Namespace) -> int:
    use_host_keys(pinned_host_key)  # host_key = true: the key known_hosts pins
    _stacks_dir, f = _open(args, create=True)
    assert f is not None
    new = edit_values(dict(f.values), f.label, f.where)
    if new is None or (new == f.values and f.exists):
        print(f"{f.label}: no change; {f.where} was not written")
        return 0
    if not new and not f.exists:
        print(f"{f.label}: nothing to save; {f.where} was not created")
        return 0
    old = dict(f.values)
    f.contents.values = new
    f.save()
    added = sorted(set(new) - set(old))
    removed = sorted(set(old) - set(new))
    changed = sorted(n for n in set(old) & set(new) if old[n] != new[n])
    parts = [
        f"{len(items)} {word}" + (f" ({', '.join(items)})" if items else "")
        for word, items in (("added", added), ("changed", changed), ("removed", removed))
    ]
    print(f"{f.label}: saved {f.where}: {', '.join(parts)}")
    return 0


def read_value(name: str) -> str:
    if sys.stdin.isatty():
        value = getpass.getpass(f"Value for {name} (not shown): ")
    else:
        raw = sys.stdin.buffer.read()
        try:
            value = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InputError(f"{name}: the value on stdin is not UTF-8 text") from None
        # `echo value |` and `pass show` end with a newline that is not part of the value
        value = value.removesuffix("\n").removesuffix("\r")
    if not value:
        raise InputError(f"{name}: empty value on stdin; nothing was changed")
    if len(value.encode()) > VALUE_LIMIT:
        raise InputError(f"{name}: the value is over {VALUE_LIMIT} bytes (podman's limit)")
    return value


def cmd_set(args: argparse.Namespace) -> int:
    use_host_keys(pinned_host_key)  # host_key = true: the key known_hosts pins
    name = check_name(args.name)
    stacks = _stacks(args)
    label = _label(stacks, args.host)
    value = read_value(name)
    f = open_file(stacks, label, create=True)
    assert f is not None
    if f.kind == "age":  # encrypting needs only the recipients, not an identity
        verb = "changed" if name in f.values else "added"
        f.values[name] = value
        if isinstance(f, AgeSecretsFile) and not f.save():
            print(f"{label}: {name} already has that value; {f.where} was not written")
            return 0
        print(f"{label}: {name} {verb} in {f.where}")
        return 0
    before = f.values.get(name)
    if before == value and f.exists:
        print(f"{label}: {name} already has that value; {f.where} was not written")
        return 0
    f.values[name] = value
    f.save()
    verb = "changed" if before is not None else "added"
    print(f"{label}: {name} {verb} in {f.where}")
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    name = check_name(args.name)
    _stacks_dir, f = _open(args, create=False)
    if f is None or name not in f.values:
        where = f.where if f else shown(file_path(_stacks_dir, args.host), _stacks_dir)
        raise InputError(f"{args.host}: {name} is not in {where}")
    del f.values[name]
    f.save()
    print(f"{f.label}: {name} removed from {f.where}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    stacks = _stacks(args)
    label = _label(stacks, args.host)
    if label == SHARED:
        f = open_file(stacks, SHARED)
        rows = [{"name": n, "file": f.where} for n in sorted(f.values)] if f else []
        wheres = [shown(file_path(stacks, SHARED), stacks)]
    else:
        seen = host_secrets(stacks, label)
        rows = []
        for n in seen.names():
            src = seen.source(n)
            assert src is not None
            rows.append({"name": n, "file": src.where})
        wheres = seen.where
    if args.json:
        sys.stdout.write(json.dumps({"host": label, "secrets": rows}, indent=2) + "\n")
        return 0
    if not rows:
        print(f"{label}: no secrets ({' and '.join(wheres)} hold none or do not exist)")
        return 0
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        print(f"{r['name'].ljust(width)}  {r['file']}")
    return 0


def cmd_rekey(args: argparse.Namespace) -> int:
    _stacks_dir, f = _open(args, create=False)
    if f is None:
        raise InputError(f"{args.host}: no secrets file to rekey")
    new = os.environ.get("BUNDLE_NEW_PASSPHRASE")
    if not new:
        if not can_prompt():
            raise InputError(
                "rekey: give the new passphrase in $BUNDLE_NEW_PASSPHRASE or run on a terminal"
            )
        new = Passphrases(_stacks_dir).prompt(f.where, new=True)
    f.save(passphrase=new)
    print(f"{f.label}: {f.where} is encrypted with the new passphrase; fingerprints are unchanged")
    return 0
