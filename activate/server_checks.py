"""Can this server run a generation: the podman its unit kinds need, the account the switcher
runs as, and the ports a rootless user may publish. Pure checks; Systemd.check_server
(activate/systemd.py) gathers the facts they need."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from .errors import Failed
from .manifest import Manifest
from .scope import CURRENT as SCOPE

# Podman version that first understands each quadlet unit kind (podman's release notes).
KIND_MIN_PODMAN = {"container": "4.4", "volume": "4.4", "network": "4.4", "image": "4.8"}
KIND_MIN_PODMAN |= {"pod": "5.0", "build": "5.2"}


def parse_version(text: str) -> tuple[int, ...]:
    """'podman version 5.4.2' or '5.0' → (5, 4, 2) / (5, 0); () when there is none."""
    m = re.search(r"([0-9]+)\.([0-9]+)(?:\.([0-9]+))?", text)
    return tuple(int(g) for g in m.groups() if g is not None) if m else ()


def required_podman(manifest: Manifest) -> tuple[tuple[int, ...], str]:
    """The newest podman the generation needs, and why."""
    need: tuple[tuple[int, ...], str] = ((), "")
    declared = manifest.requires.get("podman")
    if declared:
        need = (parse_version(declared), f"the manifest requires podman {declared}")
    for unit in manifest.units.values():
        floor = KIND_MIN_PODMAN.get(unit.kind)
        if floor and parse_version(floor) > need[0]:
            need = (parse_version(floor), f".{unit.kind} units ({unit.key}) need podman {floor}")
    return need


def check_run_as(manifest: Manifest) -> None:
    """A rootless generation runs as its user, every other one as root (activate/scope.py)."""
    want = manifest.rootless_user
    gen = f"generation {manifest.generation}"
    if want is None and SCOPE.rootless:
        raise Failed(
            f"{gen} runs under the system's service manager, which needs root, but the switcher "
            f'runs as {SCOPE.user}; set ssh_user = "root", or rootless = true, in the stack'
        )
    if want is not None and not SCOPE.rootless:
        raise Failed(
            f"{gen} is rootless and runs as {want}, but the switcher runs as root; connect as "
            f"{want} (ssh_user in the stack)"
        )
    if want is not None and want != SCOPE.user:
        raise Failed(f"{gen} runs as {want}, but the switcher runs as {SCOPE.user}")
    if want is not None and not SCOPE.lingering:
        raise Failed(
            f"lingering is off for {want}: its units would stop when it logs out and would not "
            f"start at boot; as root, run `loginctl enable-linger {want}`"
        )


def published_host_ports(unit_text: str) -> list[int]:
    """Host ports of a quadlet unit's PublishPort= lines ([IP:]HOST:CONTAINER[/PROTO])."""
    ports = []
    for line in unit_text.splitlines():
        key, _, value = line.partition("=")
        if key.strip() != "PublishPort":
            continue
        parts = value.strip().split("/")[0].rsplit(":", 2)
        host = parts[-2] if len(parts) >= 2 else ""
        first = host.split("-")[0]
        if first.isascii() and first.isdigit():
            ports.append(int(first))
    return ports


def check_unprivileged_ports(units: Mapping[str, bytes]) -> None:
    """A rootless user may bind only ports at or above net.ipv4.ip_unprivileged_port_start."""
    try:
        start = int(Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text())
    except (OSError, ValueError):
        return
    low = sorted(
        (port, name)
        for name, data in units.items()
        for port in published_host_ports(data.decode("utf-8", "replace"))
        if port < start
    )
    if low:
        port, name = low[0]
        raise Failed(
            f"{name} publishes port {port}, but a rootless user may bind only ports from {start} "
            f"up; as root, set net.ipv4.ip_unprivileged_port_start={low[0][0]} in "
            "/etc/sysctl.d/ (docs/rootless.md), or publish a higher port"
        )
