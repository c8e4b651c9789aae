"""bundle-recover.service and its switcher copy: put in place before every switch on a real
server, removed when a switch is undone to no generation. What the unit does at boot, and why,
is activate/boot.py (the program it runs)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from . import durable, scope
from .durable import fsync_dir
from .store import Store
from .systemd import Services

UNIT = "bundle-recover.service"
COPY = "boot"  # STATE/boot/activate/: the switcher the unit runs
TIMEOUT = 60  # seconds; the repair only queues jobs and takes well under one
# A user manager is itself a unit being started (user@UID.service, 90 s by default) until it
# reached its basic.target, and the user's logins wait for that: the repair, ordered before
# basic.target, gets a third of it.
USER_TIMEOUT = 30
PACKAGE = Path(__file__).resolve().parent


def applies(root: Path, services: Services) -> bool:
    """Only a real server boots: a folder standing in for one never runs the unit. The unit
    goes to the manager the switcher drives: the system's as root, the user's when rootless."""
    return services.managed and root.resolve() == Path("/")


def unit_text(state: Path, python: str, rootless: bool = False) -> str:
    journal = f"journalctl --user -u {UNIT}" if rootless else f"journalctl -u {UNIT}"
    # the user manager has no local-fs.target or sysinit.target: it starts after both
    after = "" if rootless else "After=local-fs.target sysinit.target\n"
    timeout = USER_TIMEOUT if rootless else TIMEOUT
    return f"""\
# Written by the bundle switcher (activate/boot.py) at every activation; edits are replaced.
# It finishes or undoes a switch that a crash or power loss cut short: {journal}
[Unit]
Description=bundle: finish or undo a switch cut short by a crash
DefaultDependencies=no
{after}Before=basic.target shutdown.target
Conflicts=shutdown.target
ConditionPathExists=|{state}/pending.json
ConditionPathIsSymbolicLink=|{state}/boot-generation

[Service]
Type=oneshot
WorkingDirectory={state}/{COPY}
ExecStart={python} -B -m activate.boot --state {state}
TimeoutStartSec={timeout}

[Install]
WantedBy={"default.target" if rootless else "multi-user.target"}
"""


def _python() -> str:
    exe = sys.executable
    return exe if os.path.isabs(exe) else "/usr/bin/python3"


def _package_files(folder: Path) -> dict[str, bytes]:
    if not folder.is_dir():
        return {}
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.py"))}


def _copy_switcher(store: Store) -> bool:
    """STATE/boot/activate/ holds exactly this switcher's files; True if anything changed."""
    dest = store.root / COPY / "activate"
    wanted = _package_files(PACKAGE)
    have = _package_files(dest)
    if wanted == have:
        return False
    dest.mkdir(parents=True, exist_ok=True)
    for name, data in wanted.items():
        if have.get(name) != data:
            durable.write_file(dest / name, data)
    for name in have.keys() - wanted.keys():
        (dest / name).unlink()
    fsync_dir(dest)
    return True


def unit_paths(root: Path) -> tuple[Path, Path]:
    """The unit and its enabling link: the system's, or a rootless user's (activate/scope.py)."""
    where = scope.for_root(root)
    folder = root / where.systemd_dir
    return folder / UNIT, folder / f"{where.boot_target}.wants" / UNIT


def install(store: Store, root: Path, services: Services) -> list[str]:
    """Put the copy and the enabled unit in place (idempotent); returns what was written."""
    changed = [str(store.root / COPY)] if _copy_switcher(store) else []
    unit, link = unit_paths(root)
    if unit.is_symlink() and os.readlink(unit) == "/dev/null":
        return changed  # masked by a person (`systemctl mask`): it stays off
    where = scope.for_root(root)
    text = unit_text(store.root, _python(), rootless=where.rootless).encode()
    if not unit.is_file() or unit.read_bytes() != text:
        unit.parent.mkdir(parents=True, exist_ok=True)
        durable.write_file(unit, text)
        changed.append(str(unit))
    # what `systemctl enable` makes, without depending on systemd knowing the file yet
    target = Path("/") / where.systemd_dir / UNIT
    if not link.is_symlink() or os.readlink(link) != str(target):
        link.parent.mkdir(parents=True, exist_ok=True)
        durable.point_symlink(link, str(target))
        changed.append(str(link))
    if str(unit) in changed or str(link) in changed:
        services.daemon_reload()
    return changed


def remove(store: Store, root: Path, services: Services) -> list[str]:
    """No generation is left: the unit and the copy go too; returns what was removed."""
    removed = []
    for path in unit_paths(root):
        if path.is_symlink() or path.exists():
            path.unlink()
            removed.append(str(path))
    if removed:
        services.daemon_reload()
    copy = store.root / COPY
    if copy.is_dir():
        shutil.rmtree(copy)
        removed.append(str(copy))
    return removed
