"""`bundle secrets import-vault FILE [--label HOST|shared]`: an Ansible Vault's variables as
bundle secrets, written through the one write path (builder/secrets/files.py). It prints the
names it imported and the variables it skipped, never a value.
"""

from __future__ import annotations

import argparse
import getpass
import os
import subprocess
from pathlib import Path

from builder.base.errors import InputError
from builder.commands.common import paths_from
from builder.deploy.hostkey import pinned_host_key
from builder.secrets.files import SHARED, can_prompt, open_file, shown
from builder.secrets.recipients import use_host_keys
from builder.secrets.vault import Imported, VaultError, load_variables, to_secrets

PASSWORD_ENV = "ANSIBLE_VAULT_PASSWORD_FILE"
SCRIPT_TIMEOUT = 60


def _password_from_file(path: Path, where: str) -> bytes:
    """As ansible reads it: an executable file is run and prints the password; either way the
    surrounding whitespace is not part of it."""
    try:
        if os.access(path, os.X_OK) and path.is_file():
            done = subprocess.run(
                [str(path)], capture_output=True, timeout=SCRIPT_TIMEOUT, check=False
            )
            if done.returncode != 0:
                raise InputError(f"{where} {path}: the script exited with {done.returncode}")
            password = done.stdout.strip()
        else:
            password = path.read_bytes().strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        reason = getattr(exc, "strerror", None) or "did not answer in time"
        raise InputError(f"{where} {path}: cannot read the vault password ({reason})") from None
    if not password:
        raise InputError(f"{where} {path}: the vault password file is empty")
    return password


def vault_password(option: str | None) -> bytes:
    """--vault-password-file, else $ANSIBLE_VAULT_PASSWORD_FILE, else a prompt on the terminal."""
    if option:
        return _password_from_file(Path(option), "--vault-password-file")
    if os.environ.get(PASSWORD_ENV):
        return _password_from_file(Path(os.environ[PASSWORD_ENV]), f"${PASSWORD_ENV}")
    if not can_prompt():
        raise InputError(
            "no vault password: give --vault-password-file FILE, set "
            f"${PASSWORD_ENV}, or run on a terminal to be asked"
        )
    typed = getpass.getpass("Vault password: ")
    if not typed:
        raise InputError("empty vault password; nothing was imported")
    return typed.encode()


def guess_label(vault: Path, stacks: Path) -> str:
    """host_vars/HOST/… or host_vars/HOST.yml for a host with a stack; group_vars/all: shared."""
    parts = vault.resolve().parts
    for i, part in enumerate(parts[:-1]):
        following = parts[i + 1]
        if part == "host_vars":
            host = following.split(".")[0] if i + 2 == len(parts) else following
            if (stacks / f"{host}.toml").is_file():
                return host
        if part == "group_vars" and following.split(".")[0] == "all":
            return SHARED
    raise InputError(
        f"{vault}: which secrets file should it go to? give --label HOST (a stack in "
        f"{stacks}) or --label shared"
    )


def _label(option: str | None, vault: Path, stacks: Path) -> str:
    label = option or guess_label(vault, stacks)
    if label != SHARED and not (stacks / f"{label}.toml").is_file():
        raise InputError(
            f"--label {label}: {shown(stacks / (label + '.toml'), stacks)} does not exist; "
            "secrets belong to a host (or to `shared`, seen by every host)"
        )
    return label


def read_vault(vault: Path, password: bytes) -> Imported:
    try:
        text = vault.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or "not UTF-8 text"
        raise InputError(f"{vault}: cannot read it ({reason})") from None
    try:
        return to_secrets(load_variables(text, password))
    except VaultError as exc:
        raise InputError(f"{vault}: {exc}; nothing was imported") from None


def cmd_import_vault(args: argparse.Namespace) -> int:
    use_host_keys(pinned_host_key)  # host_key = true: the key known_hosts pins
    stacks = Path(paths_from(args).stacks_dir)
    vault = Path(args.file)
    if not vault.is_file():
        raise InputError(f"{vault}: no such file (an Ansible Vault file to import)")
    label = _label(args.label, vault, stacks)
    imported = read_vault(vault, vault_password(args.vault_password_file))
    for variable, why in imported.skipped:
        print(f"skipped {variable}: {why}")
    if not imported.values:
        print(f"{label}: nothing to import from {vault}; no secrets file was written")
        return 0
    f = open_file(stacks, label, create=True)
    assert f is not None
    replaced = sorted(n for n in imported.values if n in f.values)
    f.values.update(imported.values)
    f.save()
    names = [
        f"{n} (from {imported.renamed[n]})" if n in imported.renamed else n
        for n in sorted(imported.values)
    ]
    note = f"; replaced {', '.join(replaced)}" if replaced else ""
    count = len(names)
    print(
        f"{label}: imported {count} secret{'s' if count != 1 else ''} into {f.where}: "
        f"{', '.join(names)}{note}"
    )
    return 0
