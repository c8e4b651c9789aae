"""Published ports as Services, named volumes as PersistentVolumeClaims, routes as Ingresses."""

from __future__ import annotations

import re
from typing import Any

from builder.render.kube.names import label
from builder.render.kube.sink import Sink
from builder.stack.model import Stack
from builder.stack.ports import PublishedPort, parse_port

LOOPBACK = ("127.0.0.1", "[::1]")
WILDCARD = ("0.0.0.0", "[::]")
_HOST = re.compile(
    r"(?=.{1,253}\Z)[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*"
)
VOLUME_SIZE = "1Gi"  # podman volumes have no size; a claim must ask for one


def services(sink: Sink, workload: str, where: str, ports: tuple[str, ...]) -> dict[int, str]:
    """A Service for each published port of a workload (one for a port published on several
    addresses); returns host port -> Service name (tcp), for the routes that name a port."""
    found: dict[int, str] = {}
    by_port: dict[tuple[int, str], list[tuple[int, PublishedPort, str]]] = {}
    for i, text in enumerate(ports):
        p = parse_port(text)
        by_port.setdefault((p.host_port, p.proto), []).append((i, p, text))
    for (number, proto), published in sorted(by_port.items()):
        name = label(workload, str(number), "" if proto == "tcp" else proto)
        spec: dict[str, Any] = {
            "selector": {"app.kubernetes.io/name": label(workload)},
            "type": _service_type(sink, where, published),
        }
        # one host port to two container ports cannot be one Service: each is added, and the
        # collision check refuses the pair
        targets = {p.container_port for _, p, _ in published}
        for i, p, _ in published if len(targets) > 1 else published[:1]:
            port = {"name": proto, "port": number, "targetPort": p.container_port}
            body = {"spec": {**spec, "ports": [{**port, "protocol": proto.upper()}]}}
            sink.add("v1", "Service", name, f"{where}.ports[{i}]", body)
        if proto == "tcp":
            found[number] = name
    return found


def _service_type(sink: Sink, where: str, published: list[tuple[int, PublishedPort, str]]) -> str:
    if any(p.host_ip in WILDCARD for _, p, _ in published):
        return "LoadBalancer"  # published on every address: k3s' ServiceLB does the same
    for i, p, text in published:
        if p.host_ip not in LOOPBACK:
            sink.note(
                f"{where}.ports[{i}]",
                f"{text} listens on {p.host_ip} only (a tunnel or private address)",
                "kept inside the cluster (ClusterIP): reach it through the VPN of the cluster, "
                "`kubectl port-forward`, or a LoadBalancer restricted by loadBalancerSourceRanges",
            )
    return "ClusterIP"


def claims(sink: Sink, stack: Stack, used: dict[str, set[str]]) -> None:
    """A PersistentVolumeClaim for each named volume a translated workload mounts."""
    for name, volume in sorted(stack.volumes.items()):
        users = used.get(name)
        if not users:
            continue
        if len(users) > 1:
            sink.note(
                f"volumes.{name}",
                f"mounted by {', '.join(sorted(users))}",
                "a ReadWriteOnce claim serves Pods on one node only: schedule them together "
                "or use a ReadWriteMany StorageClass",
            )
        if volume.driver or volume.options or volume.device or volume.type:
            sink.note(
                f"volumes.{name}",
                "volume driver, device, type or options",
                "a StorageClass (storageClassName on the claim) says where and how",
            )
        spec = {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": VOLUME_SIZE}},
        }
        sink.add("v1", "PersistentVolumeClaim", label(name), f"volumes.{name}", {"spec": spec})


def ingresses(sink: Sink, stack: Stack, ports: dict[int, str], ingress_class: str) -> None:
    """An Ingress for each entry of vars.routes (name -> subdomain of vars.domain and the local
    port a pod publishes), which the stack's reverse proxy serves on the host."""
    routes = stack.vars.get("routes")
    if not isinstance(routes, dict):
        return
    domain = stack.vars.get("domain")
    for name, route in sorted(routes.items()):
        where = f"vars.routes.{name}"
        ok = isinstance(route, dict) and isinstance(domain, str)
        port = route.get("port") if ok else None
        service = ports.get(port) if isinstance(port, int) else None
        if not ok or service is None:
            sink.note(
                where,
                "a route to no published port of an exported pod or container",
                "write its Ingress by hand",
            )
            continue
        host = f"{route.get('subdomain')}.{domain}" if route.get("subdomain") else str(domain)
        if not _HOST.fullmatch(host):
            sink.note(where, f"{host!r} is not a DNS name", "write its Ingress by hand")
            continue
        backend = {"service": {"name": service, "port": {"number": port}}}
        rule = {
            "host": host,
            "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]},
        }
        spec = {
            "ingressClassName": ingress_class,
            "rules": [rule],
            "tls": [{"hosts": [host], "secretName": label(name, "tls")}],
        }
        sink.add("networking.k8s.io/v1", "Ingress", label(name), where, {"spec": spec})
