"""STATE/live: the config files of `current` that running containers see through a reload.

A bind mount of a file resolves its source once, when the container starts: a mount of
STATE/current/files/… keeps showing the generation the container started with. A container
that declares `reload` mounts STATE/live/files/… instead (builder/render/features/reload.py),
and every move of `current` (forward, back, a repair) is followed by `sync`: each changed file
is rewritten in place, so the running container's mount, bound to that inode, shows the new
content, and a reload makes the process read it.

In place is not atomic: a process reading the file while it is rewritten may see part of it;
the reload comes after the write, so the reload itself always reads the whole file.
"""

from __future__ import annotations

import os
from pathlib import Path

from . import durable
from .store import Generation, Store

FOLDER = "live"


def wanted(store: Store, gen: Generation | None) -> dict[str, int]:
    """Bundle path -> mode of every file the generation's reloadable units mount from live."""
    if gen is None:
        return {}
    manifest = store.load_manifest(gen)
    return {
        path: manifest.files[path].mode
        for unit in manifest.units.values()
        for path in unit.reload or ()
    }


def sync(store: Store, gen: Generation | None) -> list[str]:
    """Make STATE/live hold exactly `gen`'s live files; returns the paths rewritten."""
    root = store.root / FOLDER
    files = wanted(store, gen)
    changed = []
    for path, mode in sorted(files.items()):
        assert gen is not None
        if _put(root / path, (gen.path / path).read_bytes(), mode):
            changed.append(path)
    if root.is_dir():
        for folder, _dirs, names in os.walk(root):
            for name in names:
                found = Path(folder) / name
                if found.relative_to(root).as_posix() not in files:
                    found.unlink()  # a container still running keeps its inode
    return changed


def _put(dest: Path, data: bytes, mode: int) -> bool:
    if dest.is_symlink() or not dest.is_file():
        if dest.is_symlink():
            dest.unlink()
        dest.parent.mkdir(parents=True, exist_ok=True)
        durable.write_file(dest, data, mode)
        return True
    with open(dest, "r+b") as fh:
        same = fh.read() == data
        if not same:  # the same inode: what a running container's bind mount shows
            fh.seek(0)
            fh.write(data)
            fh.truncate()
            fh.flush()
            os.fsync(fh.fileno())
    if os.stat(dest).st_mode & 0o7777 != mode:
        os.chmod(dest, mode)
    return not same
