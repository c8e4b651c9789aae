"""Finish or undo a switch that was killed halfway, from its journal (activate/journal.py).

A switch that was killed (kill -9, the power cut, the OOM killer) leaves STATE/pending.json
behind and the server possibly between two generations: `current` flipped but the old unit
files in /etc, half of the units restarted, units stopped that should run. The next switcher
run that holds the lock (`activate`, `rollback`, `recover`, and `status` when no switch runs)
repairs that first:

* the journal says `done`: every change was made, only the bookkeeping was cut short. The
  switch is finished: its history line is written if it is missing, the journal removed.
* any other step: the switch is undone, the same way a failed switch goes back
  (activate/restore.py): `current` back to the old generation, its unit files in /etc and
  nothing else of ours, daemon-reload, units restarted if their files differ between the
  two generations, every unit of the old generation that should run started. History gets
  `"result": "rolled back"` with the step the switch was killed at. When there was no old
  generation (a first activation), nothing of the new one is left running or installed.

If going back fails too, the journal stays, history says `rollback failed`, and the error
names what to fix; the next run tries again.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from . import boot_unit, signals
from .errors import Failed
from .install import QUADLET_DIR, SYSTEMD_DIR
from .planner import plan
from .restore import restore
from .store import Store, history_entry
from .switch import Progress, prepare
from .systemd import Services
from .unit_state import UnitState

BEFORE_FLIP = ("started", "stopped")


def recover(
    store: Store, root: Path, services: Services, by: str = "the next run of the switcher"
) -> dict[str, Any] | None:
    """Repair an interrupted switch; None when there is none. The caller holds the lock.
    `by` names the repairer in history (the boot unit, activate/boot.py, says so)."""
    record = store.pending()
    if record is None:
        if store.pending_path.exists():
            store.clear_pending()  # unreadable: written by no switcher of ours
        return None
    action = str(record.get("action") or "activate")
    from_n, to_n, step = record.get("from"), record.get("to"), record.get("step")
    where = f"{action} {from_n} -> {to_n}, killed after step {step or 'unknown'}"
    if step == "done":
        if "boot" in record:  # the boot pointer the switch left (activate/bootgen.py)
            boot = record["boot"]
            store.set_boot(store.find(boot) if isinstance(boot, int) else None)
        if not _recorded(store, record):
            message = (
                f"{record.get('summary') or 'finished'} (recorded by {by} after an interruption)"
            )
            result = str(record.get("result") or "ok")
            store.append_history(history_entry(action, from_n, to_n, result, message))
        store.clear_pending()
        return {**_summary(record), "result": "finished", "active": to_n, "detail": where}
    if not isinstance(to_n, int):
        raise Failed(
            f"{store.pending_path} names no generation to undo ({record!r}); "
            "check `status` and remove that file by hand (docs/switcher.md)"
        )
    errors = undo(store, root, services, from_n, to_n, step)
    if errors:
        message = (
            f"undoing the interrupted switch ({where}) INCOMPLETE: {'; '.join(errors)}; "
            "fix by hand (docs/switcher.md) and run the switcher again"
        )
        store.append_history(history_entry(action, from_n, to_n, "rollback failed", message))
        raise Failed(message)
    if from_n is None:
        _forget_boot_unit(store, root, services)  # no generation left: none of bundle's units
    message = f"interrupted ({where}); undone by {by}"
    store.append_history(history_entry(action, from_n, to_n, "rolled back", message))
    store.clear_pending()
    return {**_summary(record), "result": "undone", "active": from_n, "detail": where}


def _forget_boot_unit(store: Store, root: Path, services: Services) -> None:
    if boot_unit.applies(root, services):
        boot_unit.remove(store, root, services)


def _summary(record: dict[str, Any]) -> dict[str, Any]:
    keys = ("action", "from", "to", "since", "step")
    return {"interrupted": {k: record.get(k) for k in keys}}


def _recorded(store: Store, record: dict[str, Any]) -> bool:
    """Did the killed switch write its history line before it was killed?"""
    for entry in reversed(store.history()):
        if str(entry.get("time", "")) < str(record.get("since", "")):
            return False
        if (entry.get("from"), entry.get("to")) == (record.get("from"), record.get("to")):
            return bool(entry.get("result") != "rolled back")
    return False


def undo(
    store: Store, root: Path, services: Services, from_n: Any, to_n: int, step: Any
) -> list[str]:
    """Go back from a partial switch `from_n -> to_n` to `from_n` (None: to nothing)."""
    sw = prepare(store, root, services, to_n)
    old_gen = store.find(from_n) if isinstance(from_n, int) else None
    old = store.load_manifest(old_gen) if old_gen else None
    forward = plan(old, sw.new)
    # Every unit of the old generation that should run is started if it does not.
    running = UnitState(None, "active", None, None)
    live = {k: running for k, u in (old.units.items() if old else ()) if u.enable}
    sw = dataclasses.replace(sw, current=old_gen, old=old, plan=forward, live=live)
    progress = Progress(flipped=True, installed=True)
    if step in BEFORE_FLIP:
        # nothing was restarted with the new files yet: only what was stopped comes back
        progress.touched.update((*forward.stop, *forward.networks))
    else:
        progress.touched.update((*(old.units if old else ()), *sw.new.units))
    units = [*(old.units.values() if old else ()), *sw.new.units.values()]
    # Booted between two generations, units may have failed until their start limit: that is
    # the state being repaired, not a reason to refuse starting them.
    services.reset_failed(sorted({u.service for u in units}))
    with signals.ignored():
        errors = restore(sw, progress)
    for folder in (QUADLET_DIR, SYSTEMD_DIR):
        for tmp in (root / folder).glob(".*.bundle-*.tmp"):
            tmp.unlink(missing_ok=True)  # a unit file being written when the power went
    if not errors and store.current() != old_gen:
        errors.append(f"{store.current_link} does not point at generation {from_n}")
    return errors
