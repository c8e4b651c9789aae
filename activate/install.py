"""Unit files under ROOT: where each goes, writing them atomically, and noticing drift.

The files the switcher manages are exactly the unit files of the active generation's
manifest (derived, never recorded separately, so there is nothing to get out of step):
quadlet units in ROOT/etc/containers/systemd/, plain units in ROOT/etc/systemd/system/ (a
rootless host's under its user's ~/.config: activate/scope.py).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from . import durable, faults, scope
from .durable import fsync_dir
from .errors import Failed
from .manifest import Manifest, Unit

QUADLET_DIR = scope.SYSTEM.quadlet_dir
SYSTEMD_DIR = scope.SYSTEM.systemd_dir


def unit_dirs(root: Path) -> tuple[Path, Path]:
    """Where quadlet units and plain units go under ROOT."""
    where = scope.for_root(root)
    return root / where.quadlet_dir, root / where.systemd_dir


def destination(root: Path, unit: Unit) -> Path:
    quadlet, plain = unit_dirs(root)
    return (quadlet if unit.is_quadlet else plain) / unit.key


def _sha256(path: Path) -> str | None:
    try:
        with open(path, "rb") as fh:
            return hashlib.file_digest(fh, "sha256").hexdigest()
    except FileNotFoundError:
        return None


@dataclass(frozen=True)
class Drift:
    """A managed file that is not what the active generation installed."""

    path: str
    problem: str

    def __str__(self) -> str:
        return f"{self.path} ({self.problem})"


def find_drift(
    root: Path,
    active: Manifest | None,
    new: Manifest,
    interrupted: tuple[Manifest, ...] = (),
) -> list[Drift]:
    """Managed files changed or missing, and new files that would overwrite unmanaged ones.

    `interrupted` are the generations of a switch that was killed halfway: a file may then
    legitimately be in the state of either generation.
    """
    ours = tuple(m for m in (active, *interrupted) if m is not None)
    accepted: dict[Path, set[str | None]] = {}
    for manifest in ours:
        for unit in manifest.units.values():
            accepted.setdefault(destination(root, unit), set()).add(
                manifest.files[unit.path].sha256
            )
    for manifest in ours:
        present = {destination(root, u) for u in manifest.units.values()}
        for dest in accepted.keys() - present:
            accepted[dest].add(None)  # this generation has no such file, so absent is fine
    found: list[Drift] = []
    managed = set(accepted)
    for dest in sorted(accepted):
        actual = _sha256(dest)
        if actual in accepted[dest]:
            continue
        label = f"generation {active.generation}" if active else "the interrupted switch"
        problem = "missing" if actual is None else "changed"
        found.append(Drift(str(dest), f"{problem} since {label} installed it"))
    for unit in new.units.values():
        dest = destination(root, unit)
        if dest in managed:
            continue
        actual = _sha256(dest)
        if actual is not None and actual != new.files[unit.path].sha256:
            found.append(Drift(str(dest), "exists and is not managed by bundle"))
    return found


def install_units(
    root: Path, folder: Path | None, new: Manifest | None, old: Manifest | None
) -> dict[str, list[str]]:
    """Make ROOT's unit files those of `new` (None: none at all); return what changed."""
    written: list[str] = []
    removed: list[str] = []
    touched_dirs: set[Path] = set()
    wanted: set[Path] = set()
    for unit in new.units.values() if new else ():
        assert new is not None and folder is not None
        dest = destination(root, unit)
        wanted.add(dest)
        entry = new.files[unit.path]
        data = (folder / unit.path).read_bytes()
        if hashlib.sha256(data).hexdigest() != entry.sha256:
            raise Failed(
                f"{folder / unit.path} does not match its sha256 in the manifest; "
                "the generation is damaged, push it again"
            )
        if _sha256(dest) == entry.sha256 and (dest.stat().st_mode & 0o7777) == entry.mode:
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        durable.write_file(dest, data, entry.mode)
        touched_dirs.add(dest.parent)
        written.append(str(dest))
        faults.point("install-wrote-file")
    for unit in old.units.values() if old else ():
        dest = destination(root, unit)
        if dest not in wanted and (dest.exists() or dest.is_symlink()):
            dest.unlink()
            touched_dirs.add(dest.parent)
            removed.append(str(dest))
    for folder_path in touched_dirs:
        fsync_dir(folder_path)
    return {"written": sorted(written), "removed": sorted(removed)}
