"""A volume's data: mounted, bound read-only at its stable path for a backup, replaced by a
snapshot's files for a restore. On a rootless host each volume is read or written by this
program started again inside the user namespace (`_volume`, see cli.py)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .. import durable
from ..errors import Failed
from .commands import last_line, run, say
from .config import Setup
from .paths import GENERATION, stable_path
from .tools import Snapshot, Tool

STAGE_NAME = ".bundle-restore"
INNER = "_volume"  # the hidden command a rootless run starts inside the user namespace


@contextlib.contextmanager
def volume_path(volume: str) -> Iterator[Path]:
    """The volume's data folder, mounted for as long as it is needed (volumes with mount
    options are mounted by podman only while something uses them)."""
    done = run(["podman", "volume", "mount", volume], what=f"mounting volume {volume}")
    path = Path(done.stdout.strip().splitlines()[-1])
    try:
        yield path
    finally:
        run(["podman", "volume", "unmount", volume], what="podman volume unmount", check=False)


@contextlib.contextmanager
def bound(source: Path, volume: str) -> Iterator[Path]:
    """`source` bind-mounted read-only at the volume's stable path."""
    dest = stable_path(volume)
    dest.mkdir(parents=True, exist_ok=True)
    if os.path.ismount(dest):  # left by a run that was killed
        run(["umount", "--lazy", str(dest)], what=f"unmounting {dest}", check=False)
    run(["mount", "--bind", str(source), str(dest)], what=f"bind-mounting {source}")
    try:
        run(["mount", "-o", "remount,bind,ro", str(dest)], what=f"remounting {dest}", check=False)
        yield dest
    finally:
        run(["umount", str(dest)], what=f"unmounting {dest}", check=False)


def in_user_namespace(setup: Setup, tool: Tool, job: dict[str, Any]) -> str:
    """Run one volume's backup or restore (`job`) in this program started again under
    `podman unshare` (the user namespace, where the containers' owners are the numbers the
    containers see) and `unshare --mount` (a private mount namespace for the bind mounts);
    the line it ends with on success."""
    argv = [
        "podman", "unshare", "unshare", "--mount", "--propagation", "private",
        sys.executable, "-B", "-m", "activate.backup",
        "--config", str(setup.path.absolute()),
        INNER, json.dumps({**job, "repository": tool.repository}),
    ]  # fmt: skip
    # run from the folder holding activate/: the same program, whatever launched this one
    where = str(GENERATION)
    done = run(argv, what=f"{job['op']} of {job['volume']}", check=False, cwd=where)
    lines = [ln for ln in done.stdout.splitlines() if ln.strip()]
    if done.returncode != 0:
        errors = [ln.removeprefix("error: ") for ln in lines if ln.startswith("error: ")]
        raise Failed(errors[-1] if errors else last_line(done.stderr, done.returncode))
    for line in lines[:-1]:
        say(line)
    return lines[-1].removeprefix("ok: ") if lines else ""


def private_run() -> None:
    """In the private mount namespace: /run becomes a tmpfs holding the same entries as the
    real /run (bound back one by one) and /run/bundle-backup, which the user cannot create
    on the host, so the backed-up path is the one a rootful host records."""
    keep = Path(tempfile.mkdtemp(prefix="bundle-backup-run-"))
    try:
        run(["mount", "--rbind", "/run", str(keep)], what="keeping /run")
        run(["mount", "-t", "tmpfs", "-o", "mode=755", "bundle-backup", "/run"], what="/run")
        for name in sorted(os.listdir(keep)):
            source, dest = keep / name, Path("/run") / name
            if os.path.lexists(dest):  # /run/mount: mount(8) made its own
                continue
            if source.is_symlink():
                os.symlink(os.readlink(source), dest)
                continue
            if source.is_dir():
                dest.mkdir()
            else:
                dest.touch()
            run(["mount", "--rbind", str(source), str(dest)], what=f"/run/{name}", check=False)
    finally:
        run(["umount", "--lazy", str(keep)], what="unmounting", check=False)
        with contextlib.suppress(OSError):
            keep.rmdir()


def backup_volume(setup: Setup, tool: Tool, volume: str, run_id: str) -> str:
    if setup.rootless and not setup.inside:
        return in_user_namespace(setup, tool, {"op": "backup", "volume": volume, "run": run_id})
    with volume_path(volume) as path, bound(path, volume) as stable:
        return tool.backup(volume, stable, run_id)


def restore_volume(setup: Setup, tool: Tool, volume: str, snap: Snapshot) -> None:
    if setup.rootless and not setup.inside:
        job = {"op": "restore", "volume": volume, "snapshot": dataclasses.asdict(snap)}
        in_user_namespace(setup, tool, job)
        return
    with volume_path(volume) as path:
        stage = path / STAGE_NAME
        if stage.exists():
            shutil.rmtree(stage)
        try:
            root = tool.restore(snap, stage)
            replace_contents(path, root, stage)
        finally:
            shutil.rmtree(stage, ignore_errors=True)


def replace_contents(path: Path, root: Path, stage: Path) -> None:
    """The volume folder `path` gets exactly the files under `root` (inside `stage`)."""
    if not root.is_dir():
        raise Failed(f"the snapshot holds no folder {root.relative_to(stage)}")
    for entry in os.listdir(path):
        if entry == stage.name:
            continue
        target = path / entry
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        else:
            target.unlink()
    durable.fsync_tree(root)  # the restored files reach the disk before they take the names
    for entry in os.listdir(root):
        os.rename(root / entry, path / entry)
    info = root.stat()
    os.chown(path, info.st_uid, info.st_gid)
    os.chmod(path, info.st_mode & 0o7777)
    durable.fsync_dir(path)
