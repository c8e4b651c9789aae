"""Read-only views for people and the deployer: `status` and `generations`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import SwitcherError
from .install import find_drift
from .store import Store, previous_active, rollback_target
from .systemd import Services


def status(store: Store, root: Path, services: Services) -> dict[str, Any]:
    current = store.current()
    history = store.history()
    result: dict[str, Any] = {
        "current": current.number if current else None,
        "hash": None,
        "units": {},
        "last": history[-1] if history else None,
        "services": "managed" if services.managed else "not managed",
        "drift": [],
        "interrupted": store.pending(),
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
