"""Publishing files so that a power cut leaves the old version or the new one, never an empty one.

rename(2) is atomic for readers, but not durable by itself: after a power cut the new name can
point at a file whose data never reached the disk (zero bytes), and the rename itself can be
lost unless the folder holding it is fsynced. So every publish here is: write a temp name in
the same folder, fsync the data, rename, fsync the folder. Every file the switcher makes
visible by a rename (generations, the journal, `current`, run status, secrets, unit files,
snapshots, its own boot copy) goes through this module.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(path: Path) -> None:
    """Every file and folder under `path` (and `path`) on disk; links are not followed."""
    for folder, _dirs, files in os.walk(path):
        for name in files:
            child = Path(folder, name)
            if child.is_symlink() or not child.is_file():
                continue  # never open a FIFO or a device
            fd = os.open(child, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(folder))


def temp_name(dest: Path) -> Path:
    """A hidden name beside `dest`: systemd, quadlet and the switcher skip dot-files."""
    return dest.with_name(f".{dest.name}.bundle-{os.getpid()}.tmp")


def write_file(dest: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace `dest` by `data` durably: temp file, fsync, rename, fsync the folder."""
    tmp = temp_name(dest)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fchmod(fd, mode)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(dest.parent)


def write_json(dest: Path, data: Any, indent: int | None = None, mode: int = 0o644) -> None:
    text = json.dumps(data, indent=indent, sort_keys=True) + "\n"
    write_file(dest, text.encode("utf-8"), mode)


def publish_file(staged: Path, dest: Path) -> None:
    """Move a file written elsewhere in the same file system to `dest`, durably."""
    fd = os.open(staged, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(staged, dest)
    fsync_dir(dest.parent)


def publish_dir(staged: Path, dest: Path) -> None:
    """Rename a fully written folder to `dest` (which must not exist), durably."""
    fsync_tree(staged)
    os.rename(staged, dest)
    fsync_dir(dest.parent)


def rename(src: Path, dest: Path) -> None:
    """A rename that survives a power cut (both folders fsynced)."""
    os.rename(src, dest)
    fsync_dir(dest.parent)
    if src.parent != dest.parent:
        fsync_dir(src.parent)


def point_symlink(link: Path, target: str) -> None:
    """Make `link` point at `target` atomically and durably (a new link renamed over it)."""
    tmp = temp_name(link)
    tmp.unlink(missing_ok=True)
    os.symlink(target, tmp)
    os.replace(tmp, link)
    fsync_dir(link.parent)


def remove(path: Path) -> None:
    """Unlink a file durably: a removal lost to a power cut can bring a journal back."""
    try:
        path.unlink()
    except FileNotFoundError:
        return
    fsync_dir(path.parent)
