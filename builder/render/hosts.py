"""The other stacks of the repository, for a host that reads them (monitoring, WireGuard peers).

`StackIndex` loads a host's stack on first use (load, structure, its own validation) and keeps
it; a stack that does not load raises StackError with that stack's own file:line problems.
`Hosts` is what templates see as `hosts`: a read-only mapping from host name to a view of its
stack (`hosts.vps1.metrics`, `hosts.vps1.wireguard.address`, …), loaded lazily, so a template
that reads no other host never loads one. The build's input fingerprint covers the whole
stacks folder, so a change to vps1's stack makes a new build of a host that reads it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs

from builder.base.errors import StackError
from builder.render.features import monitoring, wireguard
from builder.render.validate import validate
from builder.stack.load import RawStack, load_stack
from builder.stack.model import Stack
from builder.stack.names import service_name
from builder.stack.structure import structure


def _undefined(hint: str) -> Any:
    """What a template gets for a value it may not read: reading it is an error saying why."""
    # start-up: jinja2 only while rendering; loading stacks (status, a deploy's address) needs none
    import jinja2

    return jinja2.StrictUndefined(hint=hint)


class StackIndex:
    def __init__(self, stacks_dir: Path, templates_dir: Path) -> None:
        self.stacks_dir = stacks_dir
        self.templates_dir = templates_dir
        self._loaded: dict[str, tuple[Stack, RawStack]] = {}
        self._names: list[str] | None = None

    def names(self) -> list[str]:
        # listed once per build: templates read `hosts` for every service
        if self._names is None:
            self._names = sorted(p.stem for p in self.stacks_dir.glob("*.toml"))
        return self._names

    def add(self, stack: Stack, raw: RawStack) -> None:
        """A stack already loaded (the host being built)."""
        self._loaded[stack.host.name] = (stack, raw)

    def load(self, name: str) -> tuple[Stack, RawStack]:
        if name not in self._loaded:
            raw = load_stack(self.stacks_dir, name)
            stack = structure(raw)
            problems = validate(stack, raw, self.templates_dir)
            if problems:
                raise StackError(problems)
            self._loaded[name] = (stack, raw)
        return self._loaded[name]

    def stack(self, name: str) -> Stack:
        return self.load(name)[0]


def units(stack: Stack) -> list[str]:
    """The systemd units a host's bundle keeps active (what "a unit is down" watches):
    containers, pods, the tunnel, services that stay up, and timers (a timer waiting for its
    next run is active)."""
    out = [service_name(n, "container") for n in stack.enabled_containers()]
    out += [service_name(n, "pod") for n in stack.enabled_pods()]
    for n, script in stack.enabled_scripts().items():
        if getattr(script, "on_activation", False):
            out.append(service_name(n, "service"))
        if script.on_calendar:
            out.append(service_name(n, "timer"))
    backup = getattr(stack, "backup", None)
    if backup is not None and getattr(backup, "enabled", True):
        out.append("backup.timer")
    wg = stack.tunnel()
    if wg is not None:
        out.append(wireguard.unit_key(wg))
    return sorted(out)


def reports_backups(stack: Stack) -> bool:
    """Whether the host's nightly backup reports its successes to node-exporter's textfile
    collector (docs/monitoring.md): a `[backup]` table with a metrics file, or a script
    named `backup` that writes it."""
    backup = getattr(stack, "backup", None)
    if backup is not None and getattr(backup, "enabled", True):
        return bool(getattr(backup, "metrics_file", ""))
    return "backup" in stack.enabled_scripts()


def view(stack: Stack, reader: Stack | None = None) -> dict[str, Any]:
    """One host as templates of `reader` see it in `hosts`.

    Its `metrics` are there only when `reader` can reach them: the host itself, or a WireGuard
    peer of the reader; otherwise reading them is an error that says what is missing.
    """
    containers = stack.enabled_containers()
    name = stack.host.name
    metrics: Any = monitoring.targets(stack)
    mine = reader.tunnel() if reader is not None else None
    if stack.tunnel() is None and any(c.metrics for c in containers.values()):
        metrics = _undefined(
            hint=f"{name} has no [wireguard] table (or it is disabled): "
            "its metrics cannot be scraped over the tunnel"
        )
    elif (
        reader is not None
        and name != reader.host.name
        and metrics
        and not (mine is not None and any(p.host == name for p in mine.peers))
    ):
        metrics = _undefined(
            hint=f"{name} is not a WireGuard peer of {reader.host.name}: add "
            f'{{ host = "{name}" }} to [wireguard] peers in {reader.host.name}.toml'
        )
    return {
        "name": stack.host.name,
        "host": attrs.asdict(stack.host),
        "tags": list(stack.host.tags),
        "vars": stack.vars,
        "containers": {n: attrs.asdict(c) for n, c in containers.items()},
        "pods": {n: attrs.asdict(p) for n, p in stack.enabled_pods().items()},
        "scripts": {n: attrs.asdict(s) for n, s in stack.enabled_scripts().items()},
        "wireguard": wireguard.view(stack),
        "metrics": metrics,
        "units": units(stack),
        "backup": reports_backups(stack),
    }


class Hosts(Mapping[str, Any]):
    """`hosts` in templates: every stack of the repository by name, loaded when first read."""

    def __init__(self, index: StackIndex, reader: Stack | None = None) -> None:
        self._index = index
        self._reader = reader
        self._views: dict[str, dict[str, Any]] = {}

    def __getitem__(self, name: Any) -> Any:
        if not isinstance(name, str) or name not in self._index.names():
            known = ", ".join(self._index.names())
            return _undefined(hint=f"no stack for host {name!r} in hosts (known: {known})")
        if name not in self._views:
            self._views[name] = view(self._index.stack(name), self._reader)
        return self._views[name]

    def get(self, name: Any, default: Any = None) -> Any:
        return self[name] if name in self else default  # noqa: SIM401 (this is get)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._index.names()

    def __iter__(self) -> Iterator[str]:
        return iter(self._index.names())

    def __len__(self) -> int:
        return len(self._index.names())
