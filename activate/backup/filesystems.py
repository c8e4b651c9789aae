"""Filesystem snapshots for method = "snapshot": an LVM or btrfs snapshot of the filesystem
holding a volume, taken while its containers are stopped for seconds, read by the backup."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from ..errors import Failed
from .commands import run
from .paths import STABLE_ROOT


@dataclass
class FsSnapshot:
    """One LVM or btrfs snapshot: where a volume's data is read from while it exists."""

    kind: str
    key: str  # the origin: VG/LV or the btrfs subvolume
    name: str  # the LV name or the snapshot subvolume path
    mount: Path | None = None
    base: Path = Path("/")  # the snapshot's view of `origin_base`
    origin_base: Path = Path("/")

    def view(self, path: Path) -> Path:
        return self.base / path.relative_to(self.origin_base)


def filesystem_of(path: Path) -> tuple[str, str, Path, str]:
    done = run(
        ["findmnt", "-n", "-r", "--nofsroot", "-o", "SOURCE,FSTYPE,TARGET,FSROOT",
         "--target", str(path)],
        what=f"findmnt {path}",
    )  # fmt: skip
    fields = [f.encode().decode("unicode_escape") for f in done.stdout.split()]
    if len(fields) < 4:
        raise Failed(f"findmnt gave no filesystem for {path}")
    return fields[0], fields[1], Path(fields[2]), fields[3]


def snapshot_plan(path: Path) -> tuple[str, str, str] | None:
    """How the filesystem holding `path` can be snapshotted: ("lvm", VG/LV, mount target),
    ("btrfs", subvolume root, ""), or None (neither: stop instead)."""
    source, fstype, target, _ = filesystem_of(path)
    if fstype == "btrfs":
        here = path
        while True:
            if here.stat().st_ino == 256 or here == target or here == here.parent:
                return ("btrfs", str(here), "")
            here = here.parent
    if shutil.which("lvs") and source.startswith("/dev/"):
        done = run(
            ["lvs", "--noheadings", "--separator", "/", "-o", "vg_name,lv_name", source],
            what="lvs",
            check=False,
        )
        if done.returncode == 0 and done.stdout.strip():
            return ("lvm", done.stdout.strip(), str(target))
    return None


def create_snapshot(kind: str, key: str, target: str, size: str) -> FsSnapshot:
    if kind == "btrfs":
        name = str(Path(key) / ".bundle-backup-snapshot")
        if Path(name).exists():
            run(
                ["btrfs", "subvolume", "delete", name], what="removing an old snapshot", check=False
            )
        run(["btrfs", "subvolume", "snapshot", "-r", key, name], what=f"snapshotting {key}")
        return FsSnapshot(kind, key, name, None, Path(name), Path(key))
    vg, lv = key.split("/", 1)
    name = f"{lv}-bundle-backup"
    run(["lvremove", "-f", f"{vg}/{name}"], what="lvremove", check=False)  # a killed run's
    amount = ["--extents", size] if "%" in size else ["--size", size]
    run(["lvcreate", "--snapshot", "--name", name, *amount, key], what=f"snapshotting {key}")
    return FsSnapshot(kind, key, f"{vg}/{name}", None, Path("/"), Path(target))


def mount_snapshot(snap: FsSnapshot) -> None:
    if snap.kind != "lvm":
        return
    vg, name = snap.name.split("/", 1)
    mount = STABLE_ROOT / "snapshots" / f"{vg}-{name}"
    mount.mkdir(parents=True, exist_ok=True)
    device = f"/dev/{vg}/{name}"
    fstype = run(["blkid", "-o", "value", "-s", "TYPE", device], what="blkid", check=False)
    options = {"xfs": "ro,nouuid,norecovery", "ext4": "ro,noload", "ext3": "ro,noload"}.get(
        fstype.stdout.strip(), "ro"
    )
    run(["mount", "-o", options, device, str(mount)], what=f"mounting the snapshot {device}")
    snap.mount = mount
    snap.base = mount


def remove_snapshot(snap: FsSnapshot) -> None:
    if snap.kind == "btrfs":
        run(["btrfs", "subvolume", "delete", snap.name], what="removing the snapshot", check=False)
        return
    if snap.mount is not None:
        run(["umount", str(snap.mount)], what="unmounting the snapshot", check=False)
    run(["lvremove", "-f", snap.name], what="removing the snapshot", check=False)
