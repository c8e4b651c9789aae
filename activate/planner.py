"""What to do with each unit when switching from one generation to another (pure).

`plan(old, new, live)` compares the two manifests unit by unit and returns a `Plan`. The first
matching rule wins; `enable` is the manifest's "should be running after activation and at boot".

| # | unit                                            | action                                     |
|---|-------------------------------------------------|--------------------------------------------|
| 1 | only in old                                     | stop, disable (timer/service), remove file |
| 2 | only in new, enable true                        | start (+ enable if timer/service)          |
| 3 | only in new, enable false                       | leave: installed, never started (e.g. a    |
|   |                                                 | timer-triggered .service)                  |
| 4 | .network, closure changed                       | stop every unit that requires it (directly |
|   |                                                 | or through a pod), stop it, `podman        |
|   |                                                 | network rm`, then start it and them again  |
|   |                                                 | (enable true only); quadlet never updates  |
|   |                                                 | an existing network by itself              |
| 5 | enable true → false                             | stop (+ disable if timer/service)          |
| 6 | enable false → false                            | leave; a change applies the next time it   |
|   |                                                 | runs (its timer fires)                     |
| 7 | enable false → true                             | start, or restart if its closure changed   |
| 8 | .volume, closure changed                        | leave: podman never changes an existing    |
|   |                                                 | volume, and restarting its service would   |
|   |                                                 | restart every container that uses it       |
| 9a| closure changed, only files of its `reload`     | reload (`systemctl reload`: its ExecReload=|
|   | (config files mounted from STATE/live), running | a signal or a command in its container)    |
| 9 | closure changed                                 | restart (timers: restart re-arms them)     |
| 10| closure same, live state known: failed, or      | start                                      |
|   | inactive for a kind meant to stay up (not a     |                                            |
|   | plain .service: a oneshot ends inactive)        |                                            |
| 11| closure same                                    | leave alone                                |

Then: a container whose pod is restarted (to be reloaded, or restarted) is restarted by systemd through the pod (quadlet's
BindsTo=), so it moves from `restart` to `with_pod` instead of being restarted twice.
Every timer/service with enable true is `systemctl enable`d after starting (idempotent).

Order: `start`, `restart` and `with_pod` follow the new generation's `requires` (dependencies
first); `stop` is the reverse (dependents first), over the old and new dependency edges.
Quadlet units get `[Install]` applied by the generator, so only timers/services are enabled.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from .manifest import Manifest, Unit

RUNNING_STATES = frozenset({"active", "activating", "reloading"})
ENABLEABLE_KINDS = frozenset({"service", "timer"})


@dataclass(frozen=True)
class Plan:
    """Unit keys per action, each tuple already in the order to run it."""

    stop: tuple[str, ...] = ()
    start: tuple[str, ...] = ()
    restart: tuple[str, ...] = ()
    with_pod: tuple[str, ...] = ()
    leave: tuple[str, ...] = ()
    reload: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()
    networks: tuple[str, ...] = ()
    enable: tuple[str, ...] = ()
    disable: tuple[str, ...] = ()
    order: tuple[str, ...] = ()
    reasons: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    depth: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))  # new edges
    stop_depth: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))

    def start_levels(self) -> tuple[tuple[str, tuple[str, ...]], ...]:
        """(verb, keys) batches: each dependency level's restarts, then its starts; the keys
        of one batch do not depend on each other, so one systemctl call takes them all."""
        batches = []
        for level in sorted({self.depth.get(k, 0) for k in (*self.start, *self.restart)}):
            for verb, keys in (("restart", self.restart), ("start", self.start)):
                batch = tuple(k for k in keys if self.depth.get(k, 0) == level)
                if batch:
                    batches.append((verb, batch))
        return tuple(batches)

    def stop_levels(self) -> tuple[tuple[str, ...], ...]:
        """`stop` in batches, dependents first; one batch's units do not depend on each other."""
        levels = sorted({self.stop_depth.get(k, 0) for k in self.stop}, reverse=True)
        return tuple(
            tuple(k for k in self.stop if self.stop_depth.get(k, 0) == level) for level in levels
        )

    def steps(self) -> tuple[tuple[str, str], ...]:
        """(action, key) for start and restart, interleaved in dependency order."""
        action = {k: "restart" for k in self.restart} | {k: "start" for k in self.start}
        return tuple((action[k], k) for k in self.order if k in action)

    @property
    def changes_nothing(self) -> bool:
        return not (
            self.stop or self.start or self.restart or self.reload or self.remove or self.networks
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "stop": list(self.stop),
            "start": list(self.start),
            "restart": list(self.restart),
            "with_pod": list(self.with_pod),
            "leave": list(self.leave),
            "remove": list(self.remove),
            "networks": list(self.networks),
            "enable": list(self.enable),
            "disable": list(self.disable),
            "reasons": dict(sorted(self.reasons.items())),
            **({"reload": list(self.reload)} if self.reload else {}),
        }


def _should_run_but_does_not(unit: Unit, active_state: str) -> bool:
    if active_state in RUNNING_STATES:
        return False
    # A finished oneshot .service is inactive by design; starting it again would rerun it.
    return active_state == "failed" or unit.kind != "service"


def dependency_order(edges: Mapping[str, Iterable[str]]) -> tuple[str, ...]:
    """Keys with dependencies first; ties by name; a cycle is broken at its smallest key."""
    deps = {k: {d for d in v if d in edges and d != k} for k, v in edges.items()}
    done: list[str] = []
    placed: set[str] = set()
    while len(done) < len(deps):
        ready = sorted(k for k in deps if k not in placed and deps[k] <= placed)
        if not ready:  # cycle (only across old and new edges): keep going deterministically
            ready = [min(k for k in deps if k not in placed)]
        for k in ready:
            done.append(k)
            placed.add(k)
    return tuple(done)


def depths(edges: Mapping[str, Iterable[str]]) -> dict[str, int]:
    """Each key's dependency level: 0 without dependencies, else one more than its deepest
    dependency (a cycle is cut where dependency_order cuts it)."""
    depth: dict[str, int] = {}
    for k in dependency_order(edges):
        depth[k] = 1 + max((depth[d] for d in edges[k] if d in depth and d != k), default=-1)
    return depth


def _changed_files(old: Manifest, new: Manifest, o: Unit, n: Unit) -> str:
    before = {f: old.files[f].sha256 for f in o.files}
    after = {f: new.files[f].sha256 for f in n.files}
    changed = sorted(f for f in before.keys() | after.keys() if before.get(f) != after.get(f))
    if not changed:
        return "changed"
    shown = ", ".join(changed[:3]) + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")
    return f"changed: {shown}"


def _reloads(old: Manifest, new: Manifest, o: Unit, n: Unit) -> bool:
    """Rule 9a: both declare reload, the unit file is the same, and only live files changed."""
    if o.reload is None or n.reload is None or set(o.reload) != set(n.reload):
        return False
    if o.path != n.path or old.files[o.path].sha256 != new.files[n.path].sha256:
        return False
    if set(o.files) != set(n.files):
        return False
    changed = {f for f in n.files if old.files[f].sha256 != new.files[f].sha256}
    return changed <= set(n.reload)


def _dependents(units: Iterable[Mapping[str, Unit]], target: str) -> set[str]:
    """Every unit that requires target, directly or through other units (old or new edges)."""
    rdeps: dict[str, set[str]] = {}
    for table in units:
        for u in table.values():
            for d in u.requires:
                rdeps.setdefault(d, set()).add(u.key)
    found: set[str] = set()
    todo = [target]
    while todo:
        for k in rdeps.get(todo.pop(), ()):
            if k not in found:
                found.add(k)
                todo.append(k)
    return found


def plan(
    old: Manifest | None,
    new: Manifest,
    live: Mapping[str, str] | None = None,
) -> Plan:
    """Decide per unit key; `live` maps unit keys to systemd ActiveState when known."""
    old_units: Mapping[str, Unit] = old.units if old else {}
    new_units = new.units
    action: dict[str, str] = {}
    reasons: dict[str, str] = {}
    networks: list[str] = []

    def put(key: str, what: str, why: str) -> None:
        action[key], reasons[key] = what, why

    for key in sorted(old_units.keys() | new_units.keys()):
        o, n = old_units.get(key), new_units.get(key)
        if n is None:
            put(key, "stop", "removed")
        elif o is None:
            if n.enable:
                put(key, "start", "new")
            else:
                put(key, "leave", "new; enable is false, so installed but not started")
        elif n.kind == "network" and o.closure != n.closure:
            assert old is not None
            networks.append(key)
            why = _changed_files(old, new, o, n)
            put(key, "recreate", f"{why}; network removed and created again")
        elif o.enable and not n.enable:
            put(key, "stop", "enable turned off")
        elif not n.enable:
            if o.closure != n.closure:
                put(key, "leave", "changed; enable is false, so it applies the next time it runs")
            else:
                put(key, "leave", "unchanged (enable is false)")
        elif not o.enable:
            changed = o.closure != n.closure
            put(key, "restart" if changed else "start", "enable turned on")
        elif o.closure != n.closure:
            assert old is not None
            why = _changed_files(old, new, o, n)
            if n.kind == "volume":
                put(key, "leave", f"{why}; podman does not change an existing volume")
            elif _reloads(old, new, o, n) and (live is None or live.get(key) in RUNNING_STATES):
                put(key, "reload", f"{why}; only config files: reloaded, not restarted")
            else:
                put(key, "restart", why)
        elif live is not None and _should_run_but_does_not(n, live.get(key, "inactive")):
            put(key, "start", f"unchanged but {live.get(key, 'inactive')}")
        else:
            put(key, "leave", "unchanged")

    stop: set[str] = {k for k, a in action.items() if a == "stop"}
    start: set[str] = {k for k, a in action.items() if a == "start"}
    restart: set[str] = {k for k, a in action.items() if a == "restart"}
    reload: set[str] = {k for k, a in action.items() if a == "reload"}

    # Rule 4: a changed network is recreated while everything on it is down.
    for net in networks:
        stop.add(net)
        if new_units[net].enable:
            start.add(net)
        for dep in sorted(_dependents((old_units, new_units), net)):
            if action[dep] == "stop":
                continue  # removed or turned off: stopped anyway
            if dep in old_units:
                stop.add(dep)
            reload.discard(dep)  # stopped and started: it reads its new files anyway
            if dep in new_units and new_units[dep].enable:
                restart.discard(dep)
                start.add(dep)
                reasons[dep] = f"{reasons[dep]}; stopped and started again while {net} is recreated"
            else:
                reasons[dep] = f"{reasons[dep]}; stopped while {net} is recreated"

    def running(key: str) -> bool:
        was = old_units.get(key)
        return bool(was and was.enable) and (live is None or live.get(key) in RUNNING_STATES)

    # Quadlet containers are BindsTo= their pod: systemd restarts the running ones with it.
    with_pod: set[str] = set()
    for pod in sorted(k for k in restart if new_units[k].kind == "pod"):
        for member in new_units.values():
            key = member.key
            if member.kind != "container" or pod not in member.requires or not running(key):
                continue
            if key in restart | reload or (action[key] == "leave" and key not in stop | start):
                restart.discard(key)
                reload.discard(key)
                with_pod.add(key)
                reasons[key] = f"{reasons[key]}; restarted by its pod {pod}"

    new_order = dependency_order({k: u.requires for k, u in new_units.items()})
    union_edges: dict[str, set[str]] = {}
    for table in (old_units, new_units):
        for k, u in table.items():
            union_edges.setdefault(k, set()).update(u.requires)
    stop_order = tuple(reversed(dependency_order(union_edges)))

    touched = stop | start | restart | reload | with_pod
    leave = sorted(k for k in new_units if k not in touched)
    return Plan(
        stop=tuple(k for k in stop_order if k in stop),
        start=tuple(k for k in new_order if k in start),
        restart=tuple(k for k in new_order if k in restart),
        with_pod=tuple(k for k in new_order if k in with_pod),
        leave=tuple(leave),
        reload=tuple(k for k in new_order if k in reload),
        remove=tuple(sorted(k for k in old_units if k not in new_units)),
        networks=tuple(sorted(networks)),
        enable=tuple(
            k for k in new_order if new_units[k].kind in ENABLEABLE_KINDS and new_units[k].enable
        ),
        disable=tuple(
            sorted(
                k
                for k, o in old_units.items()
                if o.kind in ENABLEABLE_KINDS
                and o.enable
                and (k not in new_units or not new_units[k].enable)
            )
        ),
        order=new_order,
        reasons=MappingProxyType(reasons),
        depth=MappingProxyType(depths({k: u.requires for k, u in new_units.items()})),
        stop_depth=MappingProxyType(depths(union_edges)),
    )
