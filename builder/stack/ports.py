"""Published ports: parse podman's `[ip:][host_port:]container_port[/proto]` and find clashes."""

from __future__ import annotations

import functools
import ipaddress
import re
from typing import Generic, TypeVar

import attrs

Where = TypeVar("Where")

_PORT = re.compile(
    r"(?:(?P<ip>[0-9]{1,3}(?:\.[0-9]{1,3}){3}|\[[0-9a-fA-F:]+\]):)?"
    r"(?:(?P<host>[0-9]{1,5}):)?(?P<container>[0-9]{1,5})(?:/(?P<proto>tcp|udp))?"
)


@attrs.frozen
class PublishedPort:
    host_ip: str
    host_port: int
    container_port: int
    proto: str

    def clashes_with(self, other: PublishedPort) -> bool:
        if (self.host_port, self.proto) != (other.host_port, other.proto):
            return False
        wildcard = ("0.0.0.0", "[::]")
        return (
            self.host_ip == other.host_ip or self.host_ip in wildcard or other.host_ip in wildcard
        )

    def __str__(self) -> str:
        return f"{self.host_ip}:{self.host_port}/{self.proto}"


class PortTable(Generic[Where]):
    """The host ports published so far, by number and protocol: a port can clash only with its
    namesakes, so checking one is a lookup, not a pass over every port of the stack."""

    def __init__(self) -> None:
        self._by_port: dict[tuple[int, str], list[tuple[PublishedPort, Where]]] = {}

    def publish(self, port: PublishedPort, where: Where) -> Where | None:
        """Record `port`; return where the first port it clashes with was published, if any."""
        namesakes = self._by_port.setdefault((port.host_port, port.proto), [])
        clash = next((at for other, at in namesakes if port.clashes_with(other)), None)
        namesakes.append((port, where))
        return clash


def parse_port(text: str) -> PublishedPort:
    """Parse one port mapping; raise ValueError with a message for a person."""
    m = _PORT.fullmatch(text)
    if not m:
        raise ValueError(
            f"{text!r} is not a port mapping: write [IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp]"
        )
    ip = m.group("ip") or "0.0.0.0"
    if not _is_ip(ip.strip("[]")):
        raise ValueError(f"{text!r}: {ip} is not an IP address")
    container = int(m.group("container"))
    host = int(m.group("host")) if m.group("host") else container
    for port in (host, container):
        if not 1 <= port <= 65535:
            raise ValueError(f"{text!r}: port {port} is outside 1-65535")
    return PublishedPort(ip, host, container, m.group("proto") or "tcp")


@functools.cache
def _is_ip(text: str) -> bool:
    # a stack binds its thousands of ports to a few addresses: each is parsed once
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
