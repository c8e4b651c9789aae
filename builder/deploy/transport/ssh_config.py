"""Where to connect: a host resolved through ~/.ssh/config (Host, HostName, Port, User, ...)."""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Any

import attrs

from builder.deploy.transport.base import (
    TransportError,
)
from builder.deploy.transport.host_key_policy import (
    HostKeyPolicy,
    Tokens,
    policy_from_config,
)
from builder.deploy.transport.host_patterns import lookup_name
from builder.deploy.transport.liveness import Configured, from_config
from builder.deploy.transport.options import CONFIG_ENV, SshOptions
from builder.deploy.transport.paramiko_import import paramiko


@attrs.frozen
class Endpoint:
    """One SSH server, as the ssh config resolves what the user wrote."""

    name: str
    hostname: str
    port: int
    user: str
    identity_files: tuple[Path, ...] = ()
    identities_only: bool = False
    proxy_jump: tuple[str, ...] = ()
    proxy_command: str | None = None
    host_key_alias: str | None = None
    limits: Configured = attrs.field(factory=Configured)  # ConnectTimeout, ServerAlive*
    host_keys: HostKeyPolicy = attrs.field(factory=HostKeyPolicy)

    def address(self) -> str:
        host = f"[{self.hostname}]" if ":" in self.hostname else self.hostname
        return f"{host}:{self.port}"

    def describe(self) -> str:
        return f"{self.user}@{self.address()}"

    def key_name(self) -> str:
        # OpenSSH looks an alias up as it is written, without the port
        return lookup_name(self.hostname, self.port, self.host_key_alias)


def load_config(options: SshOptions) -> paramiko.SSHConfig:
    path = options.config_path()
    if path is None:
        return paramiko.SSHConfig()
    try:
        return paramiko.SSHConfig.from_text(_config_text(path))
    except FileNotFoundError:
        raise TransportError(
            f"ssh config {path} does not exist: fix the path (or ${CONFIG_ENV}) or create it"
        ) from None
    except (OSError, paramiko.ssh_exception.ConfigParseError) as e:
        raise TransportError(f"cannot read ssh config {path}: {e}; fix that file") from None


def _config_text(path: Path, depth: int = 0) -> str:
    """The config with its `Include` lines replaced by the files they name (paramiko has no
    Include); relative names are under ~/.ssh, as OpenSSH reads them in a user config."""
    lines = []
    for line in path.read_text().splitlines():
        words = line.replace("=", " ", 1).split()
        if not words or words[0].lower() != "include" or depth > 8:
            lines.append(line)
            continue
        for pattern in words[1:]:
            full = Path(pattern).expanduser()
            if not full.is_absolute():
                full = Path("~/.ssh").expanduser() / full
            for included in sorted(full.parent.glob(full.name)):
                if included.is_file():
                    lines.append(_config_text(included, depth + 1))
    return "\n".join(lines) + "\n"


def _none_or(value: str | None) -> str | None:
    return None if value is None or value.lower() == "none" else value


def resolve(
    host: str,
    config: paramiko.SSHConfig,
    port: int | None = None,
    user: str | None = None,
    default_port: int = 22,
    default_user: str | None = None,
    source: str = "ssh config",
) -> Endpoint:
    """What to connect to: explicit port/user > ssh config (`source`, for messages) > the
    defaults."""
    found: dict[str, Any] = config.lookup(host)
    jumps = _none_or(found.get("proxyjump"))
    hostname = found.get("hostname", host)
    port = port or int(found.get("port", default_port))
    user = user or found.get("user") or default_user or getpass.getuser()
    alias = found.get("hostkeyalias")
    jump = jumps.split(",")[-1].strip() if jumps else ""
    tokens = Tokens(host, lookup_name(hostname, 22), port, user, alias, jump)
    return Endpoint(
        name=host,
        hostname=hostname,
        port=port,
        user=user,
        identity_files=tuple(Path(p).expanduser() for p in found.get("identityfile", [])),
        identities_only=found.get("identitiesonly", "no").lower() == "yes",
        proxy_jump=tuple(j.strip() for j in jumps.split(",")) if jumps else (),
        proxy_command=_none_or(found.get("proxycommand")),
        host_key_alias=alias,
        limits=from_config(found, host, source),
        host_keys=policy_from_config(found, tokens),
    )
