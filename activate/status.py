"""Read-only views for people and the deployer: `status` and `generations`."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from . import lock
from .errors import SwitcherError
from .install import find_drift
from .protocol import GenerationRow, HistoryEntry, Recovered, Result, Status, UnitStatus
from .recover import recover
from .store import Store, previous_active, rollback_target
from .switch import recovered_reply
from .systemd import Services


def _recover_if_idle(store: Store, root: Path, services: Services) -> dict[str, Any]:
    """A switch killed halfway is finished or undone before we report (activate/recover.py);
    one that is running is left alone and reported as such."""
    if not store.pending_path.exists():
        return {}
    try:
        with lock.held(store.lock_path, "status (repairing an interrupted switch)"):
            try:
                done = recover(store, root, services)
            except SwitcherError as exc:
                return {"recovered": Recovered(result="failed", error=exc.message)}
            return {"recovered": recovered_reply(done) if done else None}
    except lock.Busy:
        return {"switching": store.pending()}


def history_line(line: dict[str, Any]) -> HistoryEntry:
    """A line of history.jsonl, typed; written back as it was read."""
    result = line.get("result")
    return HistoryEntry(
        time=line.get("time"),
        user=line.get("user"),
        action=line.get("action"),
        from_=line.get("from"),
        to=line.get("to"),
        result=Result(result) if result in {r.value for r in Result} else None,
        message=line.get("message"),
        wire=line,
    )


def status(store: Store, root: Path, services: Services) -> Status:
    repaired = _recover_if_idle(store, root, services)
    current = store.current()
    history = store.history()
    boot = store.boot()
    head = Status(
        current=current.number if current else None,
        boot=boot.number if boot else None,
        last=history_line(history[-1]) if history else None,
        services="managed" if services.managed else "not managed",
        interrupted=None if "switching" in repaired else store.pending(),
        **repaired,
    )
    if current is None:
        return head
    manifest = store.load_manifest(current)
    states = services.states([u.service for u in manifest.units.values()])
    units = {}
    for key, unit in sorted(manifest.units.items()):
        st = states.get(unit.service)
        units[key] = UnitStatus(
            service=unit.service,
            active=st.active if st else None,
            sub=st.sub if st else None,
            main_pid=st.main_pid if st else None,
        )
    drift = tuple(str(d) for d in find_drift(root, manifest, manifest))
    return replace(head, hash=manifest.hash, units=units, drift=drift)


def generations(store: Store) -> list[GenerationRow]:
    current = store.current()
    history = store.history()
    existing = {g.number for g in store.generations()}
    current_n = current.number if current else None
    target = rollback_target(history, current_n, existing)
    listing = []
    for gen in store.generations():
        row = GenerationRow(
            generation=gen.number,
            active=current is not None and gen.name == current.name,
            folder=gen.name,
            rollback_target=gen.number == target,
            previous=gen.number == previous_active(history, current_n),
        )
        try:
            manifest = store.load_manifest(gen)
        except SwitcherError as exc:
            row = replace(row, error=exc.message)
        else:
            row = replace(
                row, hash=manifest.hash, built_at=manifest.built_at, units=len(manifest.units)
            )
        listing.append(row)
    return listing
