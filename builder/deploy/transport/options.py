"""Settings of an SSH connection that are not part of the address (no paramiko here)."""

from __future__ import annotations

import os
from pathlib import Path

import attrs

CONFIG_ENV = "BUNDLE_SSH_CONFIG"


def _optional_path(value: str | Path | None) -> Path | None:
    return None if value is None else Path(value)


def _paths(values: tuple[str | Path, ...] | list[str | Path]) -> tuple[Path, ...]:
    return tuple(Path(v) for v in values)


@attrs.frozen
class SshOptions:
    """Where to find ssh settings and keys; every default is what OpenSSH would use.

    config: ssh config file; default $BUNDLE_SSH_CONFIG, else ~/.ssh/config.
    known_hosts: the user's known_hosts, read and appended to (accept_new); default: the ssh
        config's UserKnownHostsFile, else ~/.ssh/known_hosts and ~/.ssh/known_hosts2.
    extra_known_hosts: more known_hosts files, only read (tests pin their servers' keys here).
    identity_files: keys tried after the ones the config names.
    use_agent: offer the keys of the ssh-agent at $SSH_AUTH_SOCK.
    connect_timeout: seconds for the TCP connect, the SSH banner and authentication.
    keepalive: seconds of silence before the connection is probed (SSH and TCP keepalive).
    keepalive_count_max: how many keepalives may go unanswered: a peer silent for keepalive ×
      keepalive_count_max is taken for gone. The ssh config's ConnectTimeout,
      ServerAliveInterval and ServerAliveCountMax win over these three (builder/deploy/transport/liveness.py).
    """

    config: Path | None = attrs.field(default=None, converter=_optional_path)
    known_hosts: Path | None = attrs.field(default=None, converter=_optional_path)
    extra_known_hosts: tuple[Path, ...] = attrs.field(default=(), converter=_paths)
    identity_files: tuple[Path, ...] = attrs.field(default=(), converter=_paths)
    use_agent: bool = True
    connect_timeout: float = 10.0
    keepalive: float = 10.0
    keepalive_count_max: int = 2

    def config_path(self) -> Path | None:
        """The ssh config to read, or None when there is none."""
        if self.config is not None:
            return self.config
        env = os.environ.get(CONFIG_ENV)
        if env:
            return Path(env)
        default = Path("~/.ssh/config").expanduser()
        return default if default.is_file() else None
