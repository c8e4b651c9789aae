"""What `--target` and a ProxyJump entry say, parsed without touching the network."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

import attrs

from builder.base.errors import InputError

TARGET_SYNTAX = "ssh://[USER@]HOST[:PORT] for a server, or a folder (/path or ./path)"


@attrs.frozen
class SshAddress:
    """A server as written; None means "from ~/.ssh/config, else the default"."""

    host: str
    port: int | None = None
    user: str | None = None


def parse_ssh_url(text: str) -> SshAddress:
    """`ssh://[user@]host[:port][/]`; IPv6 addresses go in brackets: `ssh://[::1]:2222`."""
    parts = urlsplit(text)
    try:
        port = parts.port
    except ValueError:
        raise InputError(f"{text}: the port is not a number from 1 to 65535") from None
    if parts.scheme != "ssh" or not parts.hostname:
        raise InputError(f"{text}: not an ssh address; write {TARGET_SYNTAX}")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.password:
        raise InputError(
            f"{text}: an ssh target names a server only (no path, password or query); "
            f"write ssh://[USER@]HOST[:PORT]"
        )
    if port == 0:
        raise InputError(f"{text}: the port is not a number from 1 to 65535")
    # urlsplit lowercases the host; keep the case the user wrote for ssh config aliases
    host = parts.netloc.rpartition("@")[2]
    if host.startswith("["):
        host = host[1 : host.index("]")]
    elif port is not None:
        host = host.rpartition(":")[0]
    return SshAddress(host=host, port=port, user=parts.username or None)


def parse_jump(text: str) -> SshAddress:
    """One ProxyJump hop: `[user@]host[:port]` or an ssh:// URL."""
    text = text.strip()
    if text.startswith("ssh://"):
        return parse_ssh_url(text)
    return parse_ssh_url(f"ssh://{text}")


def parse_target(text: str) -> SshAddress | Path:
    """`--target`: an ssh:// URL, or a folder standing in for the server's root."""
    if text.startswith("ssh://"):
        return parse_ssh_url(text)
    path = Path(text)
    if text.startswith(("/", ".")) or path.is_dir():
        if path.exists() and not path.is_dir():
            raise InputError(f"--target {text}: exists and is not a folder")
        return Path(os.path.abspath(path))
    raise InputError(
        f"--target {text}: no such folder and not an ssh:// URL; write {TARGET_SYNTAX}"
    )
