"""rollback: activate an older generation with that generation's own switcher.

Without --to the target is the newest generation older than the current one that was once
active (from history) and is still on disk, so running rollback again walks further back.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from . import activation, lock, snapshot, strict_json
from .detach import ACTION_ENV, start_detached
from .errors import BadInput, Failed
from .manifest import Manifest
from .protocol import Action, switcher_argv
from .report import emit
from .store import Generation, Store, history_entry, rollback_target
from .systemd import Services


def choose_target(store: Store, to: int | None) -> Generation:
    store.require_exists()
    if to is not None:
        return store.find(to)
    current = store.current()
    if current is None:
        raise BadInput("rollback: no generation is active, so there is nothing to go back from")
    existing = {g.number for g in store.generations()}
    n = rollback_target(store.history(), current.number, existing)
    if n is None:
        raise Failed(
            f"rollback: history shows no earlier generation than {current.number} that is still "
            "on this server; pick one with `rollback --to N` (see `generations`)"
        )
    return store.find(n)


def has_own_switcher(gen: Generation) -> bool:
    return (gen.path / "activate" / "__main__.py").is_file()


def run_own_switcher(
    gen: Generation, state: Path, root: Path, extra: list[str], capture: bool = False
) -> tuple[int, str]:
    """Run `python3 -m activate activate` inside the generation; its stderr is ours, its
    stdout too unless `capture` (then it is returned)."""
    args = ["--generation", str(gen.number), *extra]
    argv = switcher_argv("activate", str(state), str(root), args, python=sys.executable)
    env = {**os.environ, ACTION_ENV: Action.ROLLBACK.value}
    try:
        done = subprocess.run(
            argv,
            cwd=gen.path,
            env=env,
            check=False,
            stdout=subprocess.PIPE if capture else None,
            text=True,
            errors="replace",
        )
    except OSError as exc:
        raise Failed(f"rollback: cannot run the switcher of {gen.path} ({exc})") from None
    return done.returncode, done.stdout or ""


def came_from(store: Store, current: int) -> int | None:
    """The newer generation the last rollback to `current` left (None: not rolled back to)."""
    for e in reversed(store.history()):
        if e.get("to") == current and e.get("result") in ("ok", "unhealthy"):
            before = e.get("from")
            if e.get("action") == "rollback" and isinstance(before, int) and before > current:
                return before
            return None
    return None


def data_notes(store: Store, target: Generation, manifest: Manifest) -> list[dict[str, Any]]:
    """Snapshots a rollback to `target` goes back past (see activate/snapshot.py)."""
    current = store.current()
    if current is None:
        return []
    newest = current.number if current.number != target.number else came_from(store, target.number)
    if newest is None or newest <= target.number:
        return []
    return snapshot.for_rollback(store, target.number, newest, manifest)


def restore_data(
    store: Store, services: Services, manifest: Manifest, notes: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Put the snapshots back under the code now active; the caller holds the lock."""
    restored = [snapshot.restore(store, services, manifest, note) for note in notes]
    message = "; ".join(
        f"{r['unit']} from {r['path']} (the data it replaced: {r['replaced_data_kept_in']})"
        for r in restored
    )
    n = manifest.generation
    store.append_history(history_entry("restore-data", n, n, "ok", f"restored {message}"))
    return restored


def rollback(
    store: Store,
    root: Path,
    services: Services,
    target: Generation,
    extra: list[str],
    force: bool,
    restore: bool,
    detach: list[str] | None = None,
) -> int:
    """The `rollback` command: the code with the target's own switcher, then the data.

    Snapshots taken by the generations rolled back past are named in the report; with
    `restore` they are put back. `--to CURRENT --restore-data` restores only the data, after
    a rollback that did not.

    `detach` (the options of `activate --detach`): run the target's switcher detached, with
    the dead-man, when it has one (activate/detach.py); the output is then the waiting status,
    with `snapshots` and `data_warnings` for the deployer to act on after confirming.
    """
    manifest = store.load_manifest(target)
    notes = data_notes(store, target, manifest)
    current = store.current()
    hint = (
        f"put it back with `rollback --to {target.number} --restore-data` (bundle rollback "
        f"HOST --to {target.number} --restore-data), which keeps the data it replaces"
    )
    if restore and current is not None and current.number == target.number:
        if not notes:
            raise Failed(
                f"rollback --restore-data: no snapshot to put back into generation "
                f"{target.number} (none was taken by the generations rolled back past)"
            )
        with lock.held(store.lock_path, f"restore-data {target.number}"):
            restored = restore_data(store, services, manifest, notes)
        emit(
            {
                "from": target.number,
                "to": target.number,
                "result": "ok",
                "restored": restored,
                "snapshots": notes,
                "warnings": [],
            }
        )
        return 0
    can_detach = (target.path / "activate" / "detach.py").is_file() and services.managed
    if detach is not None and can_detach and not (current and current.number == target.number):
        waiting = start_detached(store, target, root, Action.ROLLBACK, detach)
        waiting["snapshots"] = notes
        waiting["data_warnings"] = [snapshot.warning(n, hint) for n in notes]
        emit(waiting)
        return 0
    if has_own_switcher(target):
        rc, out = run_own_switcher(target, store.root, root, extra, capture=True)
        try:
            report = (
                strict_json.loads(out, "the old switcher's report", "") if out.strip() else None
            )
        except strict_json.JsonRefused:
            report = None
        if not isinstance(report, dict):
            sys.stdout.write(out)
            return rc
    else:
        with lock.held(store.lock_path, f"rollback {target.number}"):
            report = activation.activate(
                store, root, services, target.number, force, Action.ROLLBACK
            ).to_json()
        report["warnings"].append(f"generation {target.number} carries no switcher; used this one")
        rc = 0
    if notes:
        report["snapshots"] = notes
        if rc == 0 and restore:
            with lock.held(store.lock_path, f"restore-data {target.number}"):
                report["restored"] = restore_data(store, services, manifest, notes)
        else:
            report.setdefault("warnings", []).extend(snapshot.warning(n, hint) for n in notes)
    emit(report)
    return rc
