"""How long a connection may be silent, from the ssh config as OpenSSH reads it.

`ConnectTimeout` limits the TCP connect, the SSH greeting and the login. `ServerAliveInterval`
is how much silence starts keepalives, `ServerAliveCountMax` how many of them may go unanswered:
a server silent for interval × count max is taken for gone (ssh_config(5)). A value of 0 or
`none`, or no value, means ours (SshOptions): unlike OpenSSH, keepalive is never off.
"""

from __future__ import annotations

import contextlib
import math
import re
import socket
from typing import Any

import attrs

from builder.base.errors import InputError

# OpenSSH's time format (sshd_config(5) TIME FORMATS): 90, 90s, 1m30s, 2h, 1w
TIME = re.compile(r"(?:[0-9]+[sSmMhHdDwW]?)+")
PART = re.compile(r"([0-9]+)([sSmMhHdDwW]?)")
UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
LONGEST = 7 * 86400  # a week: longer is a typo, not a wish


@attrs.frozen
class Liveness:
    """The limits of one connection, in seconds (`count_max` keepalives)."""

    connect: float
    interval: float
    count_max: int

    @property
    def give_up(self) -> float:
        """Silence after which the server is taken for gone."""
        return self.interval * max(1, self.count_max)


@attrs.frozen
class Configured:
    """What the ssh config says for one host; None where it is silent (or says 0, `none`)."""

    connect: float | None = None
    interval: float | None = None
    count_max: int | None = None

    def over(self, connect: float, interval: float, count_max: int) -> Liveness:
        """These values over ours (SshOptions)."""
        return Liveness(
            self.connect or connect,
            self.interval or interval,
            count_max if self.count_max is None else self.count_max,
        )


def from_config(found: dict[str, Any], host: str, source: str) -> Configured:
    """The config's values for `host` (paramiko's lookup); a bad one is one line, exit 2."""
    where = f"{source}, Host {host}"
    return Configured(
        _time(found.get("connecttimeout"), "ConnectTimeout", where),
        _time(found.get("serveraliveinterval"), "ServerAliveInterval", where),
        _count(found.get("serveralivecountmax"), where),
    )


def _time(value: Any, key: str, where: str) -> int | None:
    """Seconds, or None for `none`, 0 and no value."""
    if value is None or str(value).lower() == "none":
        return None
    text = str(value).strip()
    if not TIME.fullmatch(text):
        raise InputError(f"{where}: {key} {text!r} is not a time; write seconds (30) or like 1m30s")
    seconds = sum(int(n) * UNITS[u.lower()] for n, u in PART.findall(text))
    if seconds > LONGEST:
        raise InputError(f"{where}: {key} {text!r} is longer than a week; write a shorter time")
    return seconds or None


def _count(value: Any, where: str) -> int | None:
    if value is None:
        return None
    text = str(value).strip()
    if not re.fullmatch(r"[0-9]{1,4}", text):
        raise InputError(
            f"{where}: ServerAliveCountMax {text!r} is not a whole number; write one like 3"
        )
    return int(text)


def keep_alive(sock: socket.socket, live: Liveness) -> None:
    """TCP keepalive probes after `interval` of silence, and the connection given up after
    `give_up`: a dead peer or a silent network ends the connection, not hangs it."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    idle = max(1, round(live.interval))
    every = max(1, idle // 3)
    give_up = max(idle + 1, round(live.give_up))
    for name, value in (
        ("TCP_KEEPIDLE", idle),
        ("TCP_KEEPINTVL", every),
        ("TCP_KEEPCNT", max(1, math.ceil((give_up - idle) / every))),
        ("TCP_USER_TIMEOUT", give_up * 1000),  # milliseconds
    ):
        option = getattr(socket, name, None)
        if option is not None:  # Linux has all four; others keep what they have
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, option, value)
