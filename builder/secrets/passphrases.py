"""Where a secrets file's passphrase comes from: variables, a command, or a prompt."""

from __future__ import annotations

import getpass
import os
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builder.secrets.fileformat import SecretsError
from builder.stack import stackfiles

SECRETS_DIR = "secrets"
CONFIG_FILE = "config.toml"
COMMAND_TIMEOUT = 120


def secrets_dir(stacks_dir: Path) -> Path:
    return stacks_dir / SECRETS_DIR


def present(path: Path) -> bool:
    """Something is there: a folder or a dangling symlink is refused when read, not skipped."""
    return os.path.lexists(path)


def shown(path: Path, stacks_dir: Path) -> str:
    try:
        return str(Path(stacks_dir.name) / path.relative_to(stacks_dir))
    except ValueError:
        return str(path)


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
