"""method = "snapshot" on a real btrfs filesystem (a loop device on this machine): the plan finds
the subvolume holding a volume, the snapshot is a frozen, read-only view of it, the stable path
shows that view, and removing the snapshot leaves nothing behind.

LVM cannot be tried here (no device-mapper in the test machines' kernel): its path is not run.
"""

from __future__ import annotations

import errno
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from activate.backup import filesystems, volumes


@pytest.fixture
def btrfs(tmp_path: Path) -> Iterator[Path]:
    missing = [t for t in ("mkfs.btrfs", "btrfs", "losetup", "mount") if not shutil.which(t)]
    if missing or "btrfs" not in Path("/proc/filesystems").read_text():
        pytest.fail(
            f"btrfs is not usable here ({missing or 'no btrfs in the kernel'}); run .ci/run"
        )
    image, mnt = tmp_path / "fs.img", tmp_path / "mnt"
    subprocess.run(["truncate", "-s", "300M", str(image)], check=True)
    subprocess.run(["mkfs.btrfs", "-q", str(image)], check=True, capture_output=True)
    mnt.mkdir()
    subprocess.run(["mount", "-o", "loop", str(image), str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "--lazy", str(mnt)], check=False)


def volume(root: Path, name: str) -> Path:
    path = root / "containers/storage/volumes" / name / "_data"
    path.mkdir(parents=True)
    (path / "db").write_text("before")
    return path


def test_a_btrfs_snapshot_is_a_frozen_read_only_view(btrfs: Path) -> None:
    path = volume(btrfs, "site-data")
    assert filesystems.snapshot_plan(path) == ("btrfs", str(btrfs), "")
    snap = filesystems.create_snapshot("btrfs", str(btrfs), "", "10%ORIGIN")
    try:
        filesystems.mount_snapshot(snap)
        view = snap.view(path)
        (path / "db").write_text("after")  # the containers run again and write
        assert (view / "db").read_text() == "before"
        with pytest.raises(OSError) as err:
            (view / "new").write_text("x")
        assert err.value.errno == errno.EROFS
        with volumes.bound(view, "test-site-data") as stable:
            assert stable == Path("/run/bundle-backup/volumes/test-site-data")
            assert (stable / "db").read_text() == "before"
        assert not (stable / "db").exists()  # unmounted again
    finally:
        filesystems.remove_snapshot(snap)
    assert not Path(snap.name).exists()
    assert (path / "db").read_text() == "after"


def test_a_volume_in_a_nested_subvolume_snapshots_that_subvolume(btrfs: Path) -> None:
    subprocess.run(
        ["btrfs", "subvolume", "create", str(btrfs / "var")], check=True, capture_output=True
    )
    path = volume(btrfs / "var", "db-data")
    assert filesystems.snapshot_plan(path) == ("btrfs", str(btrfs / "var"), "")
    snap = filesystems.create_snapshot("btrfs", str(btrfs / "var"), "", "")
    try:
        assert (snap.view(path) / "db").read_text() == "before"
    finally:
        filesystems.remove_snapshot(snap)


def test_other_filesystems_have_no_snapshot(tmp_path: Path) -> None:
    path = volume(tmp_path, "v")
    assert filesystems.snapshot_plan(path) is None
