"""gc: drop old generations and the objects nothing refers to any more."""

from __future__ import annotations

import os

from . import durable
from .errors import BadInput, Failed, SwitcherError
from .protocol import Collected, Result
from .snapshot import prune as prune_snapshots
from .store import (
    OBJECT_MODE,
    Store,
    history_entry,
    previous_active,
    read_only_mode,
    remove_tree,
    rollback_target,
)
from .words import plural


def gc(store: Store, keep: int) -> Collected:
    """Keep the `keep` newest generations, the current one and the rollback targets; the
    caller holds the lock."""
    if keep < 0:
        raise BadInput(f"gc: --keep must be 0 or more, got {keep}")
    store.require_exists()
    gens = store.generations()
    current = store.current()
    history = store.history()
    current_n = current.number if current else None
    protected = {g.name for g in gens[-keep:]} if keep else set()
    if current:
        protected.add(current.name)
    boot = store.boot()  # what the next boot brings up (activate/bootgen.py)
    if boot:
        protected.add(boot.name)
    pending = store.pending() or {}  # an interrupted switch may still need either side
    for n in (
        previous_active(history, current_n),
        rollback_target(history, current_n, {g.number for g in gens}),
        pending.get("from"),
        pending.get("to"),
    ):
        protected.update(g.name for g in gens if g.number == n)
    doomed = [g for g in gens if g.name not in protected]
    kept = [g for g in gens if g.name in protected]

    # Read what the kept generations use before deleting anything: a damaged one stops gc.
    referenced: set[tuple[str, int]] = set()
    for gen in kept:
        try:
            manifest = store.load_manifest(gen)
        except SwitcherError as exc:
            raise Failed(
                f"gc: cannot read {gen.path} ({exc.message}); nothing was removed"
            ) from None
        referenced.update((f.sha256, read_only_mode(f.mode)) for f in manifest.files.values())
    shas = {sha for sha, _mode in referenced}

    store.ensure()
    for gen in doomed:
        # Unregister with one rename first, so a crash mid-delete leaves no half generation.
        trash = store.incoming / f"gc-{gen.name}-{os.getpid()}"
        durable.rename(gen.path, trash)
        remove_tree(trash)
    for stale in store.incoming.iterdir():
        remove_tree(stale)  # leftovers of killed receives; we hold the lock
    # data snapshots go with their generation (a rollback can no longer pass it)
    snapshots_removed = prune_snapshots(store, {g.number for g in kept})

    objects_removed = 0
    bytes_removed = 0
    for path in store.all_objects():
        name = path.name
        sha, _, suffix = name.partition(".")
        if name.startswith("."):
            keep_it = False  # a temp file of a killed copy
        elif suffix:
            keep_it = suffix.isascii() and suffix.isdigit() and (sha, int(suffix, 8)) in referenced
        else:
            keep_it = sha in shas or (sha, OBJECT_MODE) in referenced
        if not keep_it:
            bytes_removed += path.stat().st_size
            path.unlink()
            objects_removed += 1
    for folder in store.objects.iterdir():
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()

    removed = [g.number for g in doomed]
    if removed or objects_removed:
        message = (
            f"removed {plural(len(removed), 'generation')} {removed}, "
            f"{plural(objects_removed, 'object')} ({plural(bytes_removed, 'byte')})"
        )
        store.append_history(history_entry("gc", current_n, current_n, Result.OK, message))
    return Collected(
        removed=tuple(removed),
        objects_removed=objects_removed,
        bytes_removed=bytes_removed,
        kept=tuple(g.number for g in kept),
        snapshots_removed=tuple(snapshots_removed),
    )
