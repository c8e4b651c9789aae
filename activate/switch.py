"""A switch, before anything changes: what is active, what comes, the plan, and the live states.

`prepare` reads everything and decides (it is also the `plan` command); the way forward
(activate/activation.py) and the way back (activate/restore.py) act on the `Switch` it returns.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import crashes, protocol, secrets
from .errors import BadInput, Failed, SwitcherError
from .install import find_drift
from .manifest import Manifest
from .planner import Plan, plan
from .protocol import Recovered, Result, Switched
from .store import Generation, Store
from .systemd import Services, network_name
from .unit_state import UnitState


@dataclass(frozen=True)
class Switch:
    """Everything known before anything changes."""

    store: Store
    root: Path
    services: Services
    current: Generation | None
    old: Manifest | None
    target: Generation
    new: Manifest
    live: dict[str, UnitState]
    plan: Plan
    warnings: tuple[str, ...]
    interrupted: dict[str, Any] | None

    def service(self, key: str) -> str:
        unit = self.new.units.get(key) or (self.old.units[key] if self.old else None)
        assert unit is not None
        return unit.service

    def network_name(self, key: str, manifest: Manifest, folder: Path) -> str:
        text = (folder / manifest.units[key].path).read_text(encoding="utf-8", errors="replace")
        return network_name(key, text)


@dataclass
class Progress:
    """What the forward path has done so far: the way back undoes exactly that."""

    touched: set[str] = field(default_factory=set)
    flipped: bool = False
    installed: bool = False


def verify_generation(gen: Generation, manifest: Manifest) -> None:
    """Every file of the generation is there with its sha256 (receive checked; disks rot)."""
    for path, entry in manifest.files.items():
        try:
            with open(gen.path / path, "rb") as fh:
                actual = hashlib.file_digest(fh, "sha256").hexdigest()
        except OSError as exc:
            raise Failed(
                f"{gen.path / path}: {exc.strerror}; generation {gen.number} is damaged, push it again"
            ) from None
        if actual != entry.sha256:
            raise Failed(
                f"{gen.path / path} does not match its sha256; generation {gen.number} is "
                "damaged, push it again"
            )


def live_states(services: Services, old: Manifest | None, new: Manifest) -> dict[str, UnitState]:
    units = {**(old.units if old else {}), **new.units}
    states = services.states([u.service for u in units.values()])
    return {key: states[u.service] for key, u in units.items() if u.service in states}


def state_dir_warnings(store: Store, root: Path, new: Manifest, services: Services) -> list[str]:
    # a folder standing in for a server keeps its state under ROOT, at the same path
    under_root = os.path.join(str(root), new.state_dir.lstrip("/"))
    here = os.path.realpath(store.root)
    if here in (os.path.realpath(new.state_dir), os.path.realpath(under_root)):
        return []
    problem = (
        f"generation {new.generation} was built for state_dir {new.state_dir} but this "
        f"switcher runs with --state {store.root}"
    )
    if services.managed:
        raise BadInput(f"{problem}; its units would point at the wrong files, rebuild it")
    return [f"{problem} (harmless here: services are not managed)"]


def prepare(store: Store, root: Path, services: Services, number: int) -> Switch:
    """Read everything and decide; changes nothing (this is also `plan`)."""
    store.require_exists()
    target = store.find(number)
    new = store.load_manifest(target)
    current = store.current()
    old = store.load_manifest(current) if current else None
    warnings = state_dir_warnings(store, root, new, services)
    live = live_states(services, old, new) if services.managed else {}
    live_active = {k: s.active or "inactive" for k, s in live.items()} if services.managed else None
    interrupted = store.pending()
    if interrupted:
        warnings.append(
            f"an earlier switch from generation {interrupted.get('from')} to "
            f"{interrupted.get('to')} was interrupted ({interrupted.get('since')}); this run "
            "finishes the job"
        )
    return Switch(
        store=store,
        root=root,
        services=services,
        current=current,
        old=old,
        target=target,
        new=new,
        live=live,
        plan=plan(old, new, live_active),
        warnings=tuple(warnings),
        interrupted=interrupted,
    )


def drift_of(sw: Switch) -> list[str]:
    others: list[Manifest] = []
    if sw.interrupted:
        for key in ("from", "to"):
            n = sw.interrupted.get(key)
            if isinstance(n, int) and n != (sw.current.number if sw.current else None):
                # Gone or damaged: its files then simply count as drift.
                with contextlib.suppress(SwitcherError):
                    others.append(sw.store.load_manifest(sw.store.find(n)))
    return [str(d) for d in find_drift(sw.root, sw.old, sw.new, tuple(others))]


def start_unit(
    sw: Switch, action: str, key: str, redact: Callable[[str], str] | None = None
) -> None:
    """Start or restart a unit; one that died at once is told like a crash (crashes.py)."""
    service = sw.service(key)
    try:
        (sw.services.start if action == "start" else sw.services.restart)(service)
    except Failed:
        gone = crashes.account(sw.services, [service], redact or redactor(sw))
        if gone is None:
            raise
        raise Failed(gone) from None


def start_level(sw: Switch, action: str, keys: tuple[str, ...]) -> None:
    """Start or restart units of one dependency level with one call; the units that failed
    are named, one that died at once told like a crash (crashes.py)."""
    names = [sw.service(k) for k in keys]
    try:
        sw.services.start_all(action, names)
    except Failed as exc:
        gone = crashes.account(sw.services, getattr(exc, "units", names), redactor(sw))
        if gone is None:
            raise
        raise Failed(gone) from None


def redactor(sw: Switch) -> Callable[[str], str]:
    return secrets.redactor(sw.store, sw.target)


def both_redactor(sw: Switch) -> Callable[[str], str]:
    """On the way back a unit may print the secrets of either generation."""
    new = redactor(sw)
    if sw.current is None:
        return new
    old = secrets.redactor(sw.store, sw.current)
    return lambda line: old(new(line))


def report_of(sw: Switch, result: Result, **extra: Any) -> Switched:
    """The switch's report; `extra` are the other fields of `Switched`."""
    return Switched(
        from_=sw.current.number if sw.current else None,
        to=sw.target.number,
        plan=plan_reply(sw.plan),
        result=result,
        services="managed" if sw.services.managed else "not managed",
        warnings=sw.warnings,
        **extra,
    )


def recovered_reply(record: dict[str, Any]) -> Recovered:
    """What recover() did (activate/recover.py) as reports and `status` name it."""
    return Recovered(
        interrupted=record["interrupted"],
        result=record["result"],
        active=record["active"],
        detail=record["detail"],
    )


def plan_reply(p: Plan) -> protocol.Plan:
    return protocol.Plan(
        stop=p.stop,
        start=p.start,
        restart=p.restart,
        with_pod=p.with_pod,
        leave=p.leave,
        reload=p.reload,
        remove=p.remove,
        networks=p.networks,
        enable=p.enable,
        disable=p.disable,
        reasons=dict(sorted(p.reasons.items())),
    )


def plan_summary(p: Plan) -> str:
    parts = [
        f"{len(items)} {label}"
        for label, items in (
            ("stopped", p.stop),
            ("started", p.start),
            ("restarted", p.restart),
            ("reloaded", p.reload),
            ("removed", p.remove),
        )
        if items
    ]
    return ", ".join(parts) if parts else "no unit changed"
