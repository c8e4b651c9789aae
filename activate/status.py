"""Read-only views for people and the deployer: `status` and `generations`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import lock
from .errors import SwitcherError
from .install import find_drift
from .recover import recover
from .store import Store, previous_active, rollback_target
from .systemd import Services


def _recover_if_idle(store: Store, root: Path, services: Services) -> dict[str, Any]:
    """A switch killed halfway is finished or undone before we report (activate/recover.py);
    one that is running is left alone and reported as such."""
    if not store.pending_path.exists():
        return {}
    try:
        with lock.held(store.lock_path, "status (repairing an interrupted switch)"):
            try:
                return {"recovered": recover(store, root, services)}
            except SwitcherError as exc:
                return {"recovered": {"result": "failed", "error": exc.message}}
    except lock.Busy:
        return {"switching": store.pending()}


def status(store: Store, root: Path, services: Services) -> dict[str, Any]:
    repaired = _recover_if_idle(store, root, services)
    current = store.current()
    history = store.history()
    result: dict[str, Any] = {
        "current": current.number if current else None,
        "hash": None,
        "units": {},
        "last": history[-1] if history else None,
        "services": "managed" if services.managed else "not managed",
        "drift": [],
        "interrupted": None if "switching" in repaired else store.pending(),
        "recovered": None,
        "switching": None,
        **repaired,
    }
    if current is None:
        return result
    manifest = store.load_manifest(current)
    result["hash"] = manifest.hash
    states = services.states([u.service for u in manifest.units.values()])
    for key, unit in sorted(manifest.units.items()):
        st = states.get(unit.service)
        result["units"][key] = {
            "service": unit.service,
            "active": st.active if st else None,
            "sub": st.sub if st else None,
            "main_pid": st.main_pid if st else None,
        }
    result["drift"] = [str(d) for d in find_drift(root, manifest, manifest)]
    return result


def generations(store: Store) -> list[dict[str, Any]]:
    current = store.current()
    history = store.history()
    existing = {g.number for g in store.generations()}
    current_n = current.number if current else None
    target = rollback_target(history, current_n, existing)
    listing = []
    for gen in store.generations():
        entry: dict[str, Any] = {
            "generation": gen.number,
            "hash": None,
            "built_at": None,
            "active": current is not None and gen.name == current.name,
            "units": None,
            "folder": gen.name,
            "rollback_target": gen.number == target,
            "previous": gen.number == previous_active(history, current_n),
        }
        try:
            manifest = store.load_manifest(gen)
            entry.update(hash=manifest.hash, built_at=manifest.built_at, units=len(manifest.units))
        except SwitcherError as exc:
            entry["error"] = exc.message
        listing.append(entry)
    return listing
