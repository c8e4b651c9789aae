"""Metrics endpoints: declared once per container, published on the tunnel, read by templates.

`metrics = { port = 9009, path = "/_synapse/metrics" }` on a container says where Prometheus
finds it. On a host with `[wireguard]`, the build publishes TUNNEL_IP:PORT:PORT for it (on its
pod when it is in one) unless that exact mapping is already there; a container on the host
network listens on the tunnel address by itself (its command or config says so). Templates of
any host read the endpoints through `hosts.NAME.metrics` (builder/render/hosts.py), each with its
`target` (TUNNEL_IP:PORT) and `path`. See docs/monitoring.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from builder.base.errors import Problem
from builder.render.features.wireguard import bracketed, tunnel_ip
from builder.stack.load import KeyPath, RawStack
from builder.stack.model import Container, Metrics, Stack
from builder.stack.names import service_name
from builder.stack.ports import PublishedPort, parse_port


def owner(name: str, c: Container) -> KeyPath:
    """Where a container's ports are published: its pod, or itself."""
    return ("pods", c.pod) if c.pod else ("containers", name)


def _key(port: PublishedPort) -> tuple[int, str]:
    return port.host_port, port.proto


def _published(stack: Stack) -> dict[tuple[int, str], list[tuple[PublishedPort, KeyPath]]]:
    """The stack's published ports by host port and protocol, in stack order: only a port's
    namesakes can cover or clash with it, so each check is a lookup, not a pass over all."""
    out: dict[tuple[int, str], list[tuple[PublishedPort, KeyPath]]] = {}
    owners = [(("pods", n), p.ports) for n, p in stack.enabled_pods().items()]
    owners += [(("containers", n), c.ports) for n, c in stack.enabled_containers().items()]
    for at, ports in owners:
        for text in ports:
            try:
                port = parse_port(text)
            except ValueError:
                continue  # reported by the port check
            out.setdefault(_key(port), []).append((port, at))
    return out


def _scraped_in_place(c: Container) -> bool:
    """On the host network, nothing is published: the process listens on the address itself."""
    return "host" in c.networks


def _wanted(stack: Stack) -> Iterator[tuple[str, Metrics, KeyPath, str]]:
    """(container, its metrics, the owner of its ports, the mapping its metrics need)."""
    address = tunnel_ip(stack)
    if address is None:
        return
    ip = bracketed(address)
    for name, c in sorted(stack.enabled_containers().items()):
        if c.metrics is None or _scraped_in_place(c) or "none" in c.networks:
            continue
        if c.pod is not None and c.pod not in stack.enabled_pods():
            continue
        yield name, c.metrics, owner(name, c), f"{ip}:{c.metrics.port}:{c.metrics.port}"


def _covers(port: PublishedPort, where: KeyPath, want: PublishedPort, at: KeyPath) -> bool:
    """The owner already publishes the endpoint on the tunnel address (or on every address)."""
    return (
        where == at
        and (port.host_port, port.container_port, port.proto)
        == (want.host_port, want.container_port, want.proto)
        and port.host_ip in (want.host_ip, "0.0.0.0", "[::]")
    )


def extra_ports(stack: Stack) -> dict[KeyPath, tuple[str, ...]]:
    """The mappings the build adds for metrics endpoints, by owner (pod or container)."""
    published = _published(stack)
    extra: dict[KeyPath, list[str]] = {}
    for _name, _metrics, at, mapping in _wanted(stack):
        want = parse_port(mapping)
        if any(_covers(p, where, want, at) for p, where in published.get(_key(want), ())):
            continue
        if mapping not in extra.get(at, []):
            extra.setdefault(at, []).append(mapping)
    return {k: tuple(v) for k, v in sorted(extra.items())}


def problems(stack: Stack, raw: RawStack) -> Iterator[Problem]:
    p = raw.problem
    for name, c in stack.enabled_containers().items():
        if c.metrics is None:
            continue
        at: KeyPath = ("containers", name, "metrics")
        if not 1 <= c.metrics.port <= 65535:
            yield p((*at, "port"), "must be between 1 and 65535")
        path = c.metrics.path
        if not path.startswith("/") or any(ch.isspace() or ch in "?#" for ch in path):
            yield p((*at, "path"), f'{path!r}: write the URL path alone, like "/metrics"')
        if "none" in c.networks:
            yield p(at, 'a container with networks = ["none"] cannot be scraped')
    published = _published(stack)
    added: dict[tuple[int, str], list[tuple[PublishedPort, KeyPath, str]]] = {}
    for name, metrics, where, mapping in _wanted(stack):
        if not 1 <= metrics.port <= 65535:
            continue
        want = parse_port(mapping)
        at = ("containers", name, "metrics", "port")
        for port, other in published.get(_key(want), ()):
            if _covers(port, other, want, where):
                break  # already published: nothing to add
            if port.clashes_with(want):
                owner_name = ".".join(str(x) for x in other)
                yield p(
                    at,
                    f"the metrics need {want.host_ip}:{want.host_port} published, but "
                    f"{owner_name} already publishes {port}: choose another port",
                )
                break
        else:
            for port, _where, by in added.get(_key(want), ()):
                if port.clashes_with(want) and by != name:
                    yield p(
                        at, f"containers.{by} declares metrics on the same port: choose another"
                    )
                    break
            added.setdefault(_key(want), []).append((want, where, name))


def targets(stack: Stack) -> list[dict[str, Any]]:
    """The scrape targets of a host: one per container that declares metrics (needs a tunnel)."""
    address = tunnel_ip(stack)
    if address is None:
        return []
    out = []
    for name, c in sorted(stack.enabled_containers().items()):
        if c.metrics is None:
            continue
        out.append(
            {
                "service": name,
                "unit": service_name(name, "container"),
                "port": c.metrics.port,
                "path": c.metrics.path,
                "target": f"{bracketed(address)}:{c.metrics.port}",
            }
        )
    return out
