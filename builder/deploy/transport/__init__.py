"""Where commands for a server run: over SSH, or on this machine (see docs/transport.md).

    transport, root = open_transport(args.target, host.address, host.ssh_user, host.ssh_port,
                                     accept_new=args.accept_new)
    with transport:
        result = transport.run(["python3", "-m", "activate", "status", "--root", root, ...])

paramiko is imported only when an SSH target is opened, never at build time.
"""

from __future__ import annotations

from pathlib import Path

from builder.deploy.transport.address import SshAddress, parse_target
from builder.deploy.transport.base import (
    CommandResult,
    ConnectionLost,
    DeadlineExceeded,
    Stdin,
    Transport,
    TransportError,
)
from builder.deploy.transport.local import LocalTransport
from builder.deploy.transport.options import SshOptions

__all__ = [
    "CommandResult",
    "ConnectionLost",
    "DeadlineExceeded",
    "LocalTransport",
    "SshOptions",
    "Stdin",
    "Transport",
    "TransportError",
    "open_transport",
]


def open_transport(
    target: str | None,
    host_address: str,
    ssh_user: str = "root",
    ssh_port: int = 22,
    accept_new: bool = False,
    *,
    ssh_options: SshOptions | None = None,
) -> tuple[Transport, str]:
    """The transport for `--target` (or, without one, the host's address from its stack)
    and the ROOT to pass to the switcher: "/" on a server, the folder for a DIR target.

    Precedence for an SSH server: what the ssh:// URL says > ~/.ssh/config for that name >
    the stack's ssh_user/ssh_port.
    """
    where = parse_target(target) if target is not None else SshAddress(host_address)
    if isinstance(where, Path):
        return LocalTransport(), str(where)
    from builder.deploy.transport import (
        ssh,  # start-up: paramiko costs ~150 ms, paid only for SSH targets
    )

    transport = ssh.connect(
        where.host,
        where.port,
        where.user,
        accept_new=accept_new,
        options=ssh_options,
        default_port=ssh_port,
        default_user=ssh_user,
    )
    return transport, "/"
