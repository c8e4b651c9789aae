"""State-aware switches: code rolls back, data does not, so data is kept before it can change.

When a generation changes the image of a stateful container (manifest `units.KEY.state`,
from `stateful = true` in the stack), activation first keeps that container's data:

* with a dump command (`dump` in the stack): `podman exec CONTAINER sh -c DUMP`, its stdout
  saved as STATE/snapshots/N/KEY.dump, while the old container still runs;
* otherwise: the container is stopped (it is about to be restarted with the new image anyway)
  and each of its named volumes is saved with `podman volume export` as
  STATE/snapshots/N/VOLUME.tar.

N is the generation being activated; STATE/snapshots/N/snapshot.json says what was kept, from
which generation and image, and when. `restore()` puts a snapshot back for the code now active
(rollback --restore-data): the data it replaces is kept first under
STATE/snapshots/N/replaced-TIME/KEY/,
so nothing is lost either way.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from . import durable, strict_json
from .durable import fsync_dir
from .errors import BadInput, Failed
from .manifest import Manifest, State, Unit
from .store import Generation, Store, now_utc, remove_tree
from .systemd import Services

SNAPSHOT_FILE = "snapshot.json"
TIMEOUT = 3600


def snapshots_dir(store: Store) -> Path:
    return store.root / "snapshots"


def folder(store: Store, generation: int) -> Path:
    return snapshots_dir(store) / str(generation)


@dataclass(frozen=True)
class Change:
    """A stateful unit whose image the switch changes."""

    key: str
    service: str
    state: State
    image_from: str
    image_to: str


def changes(old: Manifest | None, new: Manifest) -> list[Change]:
    if old is None:
        return []
    found = []
    for key, unit in sorted(new.units.items()):
        before = old.units.get(key)
        if unit.state is None or before is None or not unit.image or not before.image:
            continue
        if unit.image != before.image:
            found.append(Change(key, unit.service, unit.state, before.image, unit.image))
    return found


def _podman(
    argv: Sequence[str],
    what: str,
    stdin: IO[bytes] | None = None,
    stdout: IO[bytes] | None = None,
) -> str:
    try:
        done = subprocess.run(
            ["podman", *argv],
            stdin=stdin if stdin is not None else subprocess.DEVNULL,
            stdout=stdout if stdout is not None else subprocess.PIPE,
            stderr=subprocess.PIPE,
            timeout=TIMEOUT,
            check=False,
        )
    except FileNotFoundError:
        raise Failed("podman is not installed on this server (not on PATH)") from None
    except subprocess.TimeoutExpired:
        raise Failed(f"{what} did not finish within {TIMEOUT} s") from None
    if done.returncode != 0:
        lines = [ln for ln in done.stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
        raise Failed(f"{what} failed (exit {done.returncode}: {(lines or ['no message'])[-1]})")
    return done.stdout.decode("utf-8", "replace") if stdout is None else ""


def _write_json(path: Path, data: dict[str, Any]) -> None:
    durable.write_json(path, data, indent=2)


def _fsynced(path: Path) -> int:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())
    return path.stat().st_size


def _save_volume(volume: str, dest: Path) -> int:
    _podman(["volume", "export", "--output", str(dest), "--", volume], f"exporting volume {volume}")
    return _fsynced(dest)


def _save_dump(state: State, dest: Path) -> int:
    assert state.dump is not None
    with open(dest, "wb") as out:
        _podman(
            ["exec", state.container, "sh", "-c", state.dump],
            f"the dump command of {state.container}",
            stdout=out,
        )
    return _fsynced(dest)


def take(
    store: Store,
    services: Services,
    current: Generation | None,
    old: Manifest | None,
    new: Manifest,
    stopped: Callable[[str], None],
) -> dict[str, Any] | None:
    """Keep the data of every stateful unit whose image changes; None if there is none.

    `stopped(key)` is told about each unit stopped for a consistent volume export, so a
    failed switch knows to start it again.
    """
    found = changes(old, new)
    if not found or not services.managed:
        return None
    final = folder(store, new.generation)
    staging = snapshots_dir(store) / f".{new.generation}.{os.getpid()}.tmp"
    if staging.exists():
        remove_tree(staging)
    staging.mkdir(parents=True, mode=0o700)
    try:
        record = _keep(services, current, new, found, staging, stopped)
    except BaseException:
        remove_tree(staging)  # a half snapshot is no snapshot
        raise
    if final.exists():  # activated before and left again: keep that older snapshot too
        durable.rename(final, final.with_name(f"{final.name}.{record['time'].replace(':', '')}"))
    durable.publish_dir(staging, final)
    return {**record, "path": str(final)}


def _keep(
    services: Services,
    current: Generation | None,
    new: Manifest,
    found: list[Change],
    staging: Path,
    stopped: Callable[[str], None],
) -> dict[str, Any]:
    units: dict[str, Any] = {}
    for change in found:
        entry: dict[str, Any] = {
            "service": change.service,
            "container": change.state.container,
            "image_from": change.image_from,
            "image_to": change.image_to,
            "volumes": {},
            "dump": None,
            "bytes": 0,
        }
        if change.state.dump:
            name = f"{change.key}.dump"
            entry["dump"] = name
            entry["bytes"] += _save_dump(change.state, staging / name)
        else:
            stopped(change.key)
            services.stop(change.service)
            for volume in change.state.volumes:
                name = f"{volume}.tar"
                entry["volumes"][volume] = name
                entry["bytes"] += _save_volume(volume, staging / name)
        units[change.key] = entry
    record = {
        "generation": new.generation,
        "from": current.number if current else None,
        "time": now_utc(),
        "units": units,
    }
    _write_json(staging / SNAPSHOT_FILE, record)
    fsync_dir(staging)
    return record


def load(store: Store, generation: int) -> dict[str, Any] | None:
    path = folder(store, generation) / SNAPSHOT_FILE
    try:
        record = strict_json.loads(path.read_bytes(), str(path), "look at it by hand")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise Failed(f"{path}: cannot read ({exc}); look at it by hand") from None
    except strict_json.JsonRefused as exc:
        raise Failed(exc.message) from None
    return {**record, "path": str(path.parent)}


def between(store: Store, low: int, high: int) -> list[dict[str, Any]]:
    """Snapshots of the generations low < G <= high, oldest first: a rollback from high to
    low goes back past them."""
    found = []
    base = snapshots_dir(store)
    if not base.is_dir():
        return []
    for entry in base.iterdir():
        if entry.name.isascii() and entry.name.isdigit() and low < int(entry.name) <= high:
            record = load(store, int(entry.name))
            if record:
                found.append(record)
    return sorted(found, key=lambda r: int(r["generation"]))


def for_rollback(store: Store, low: int, high: int, manifest: Manifest) -> list[dict[str, Any]]:
    """Per stateful unit of `manifest` (the generation rolled back to), the oldest snapshot
    taken after it: the data as it was when that generation's code last ran."""
    chosen: dict[str, dict[str, Any]] = {}
    for record in between(store, low, high):
        for key, entry in record.get("units", {}).items():
            if key in manifest.units and key not in chosen:
                chosen[key] = {
                    "generation": record["generation"],
                    "unit": key,
                    "time": record.get("time"),
                    "image_from": entry.get("image_from"),
                    "image_to": entry.get("image_to"),
                    "volumes": sorted(entry.get("volumes", {})),
                    "dump": entry.get("dump"),
                    "path": record["path"],
                }
    return [chosen[k] for k in sorted(chosen)]


def warning(note: dict[str, Any], restore_hint: str) -> str:
    what = ", ".join(note["volumes"]) or "its dump"
    return (
        f"generation {note['generation']} changed the image of {note['unit']} "
        f"({note['image_from']} -> {note['image_to']}) and kept its data first ({what}, "
        f"{note['path']}); that data was NOT put back, so {note['unit']} now runs the old "
        f"code on data the newer code may have migrated; {restore_hint}"
    )


def _clear(mountpoint: Path) -> None:
    for child in mountpoint.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def restore(
    store: Store, services: Services, manifest: Manifest, note: dict[str, Any]
) -> dict[str, Any]:
    """Put one unit's snapshot back under the code now active; the caller holds the lock."""
    key = note["unit"]
    unit: Unit | None = manifest.units.get(key)
    if unit is None or unit.state is None:
        raise BadInput(f"{key} is not a stateful unit of generation {manifest.generation}")
    if not services.managed:
        raise BadInput("restoring data needs the real service manager (ROOT must be '/')")
    if unit.image != note["image_from"]:
        raise Failed(
            f"the snapshot of {key} in {note['path']} was taken under {note['image_from']} but "
            f"generation {manifest.generation} runs {unit.image}; not restoring it"
        )
    source = Path(note["path"])
    keep = source / f"replaced-{now_utc().replace(':', '')}" / key
    keep.mkdir(mode=0o700, parents=True)
    state = unit.state
    if note["dump"]:
        restore_cmd = state.restore
        if not restore_cmd:
            raise Failed(f"{key} declares no restore command; load {source / note['dump']} by hand")
        services.start(unit.service)
        _save_dump(state, keep / note["dump"])
        with open(source / note["dump"], "rb") as dump:
            _podman(
                ["exec", "-i", state.container, "sh", "-c", restore_cmd],
                f"the restore command of {state.container}",
                stdin=dump,
            )
    else:
        services.stop(unit.service)
        try:
            for volume in note["volumes"]:
                _save_volume(volume, keep / f"{volume}.tar")
                text = _podman(
                    ["volume", "inspect", "--format", "{{.Mountpoint}}", "--", volume],
                    f"inspecting volume {volume}",
                )
                mountpoint = Path(text.strip())
                if not mountpoint.is_dir():
                    raise Failed(f"volume {volume} has no local mountpoint ({text.strip()!r})")
                _clear(mountpoint)
                _podman(
                    ["volume", "import", "--", volume, str(source / f"{volume}.tar")],
                    f"importing {source / f'{volume}.tar'} into volume {volume}",
                )
        finally:
            services.start(unit.service)
    return {**note, "restored": True, "replaced_data_kept_in": str(keep)}


def prune(store: Store, kept: set[int]) -> list[str]:
    """Remove the snapshots of generations gc removed."""
    base = snapshots_dir(store)
    removed: list[str] = []
    if not base.is_dir():
        return removed
    for entry in base.iterdir():
        number = entry.name.split(".", 1)[0]
        if number.isascii() and number.isdigit() and int(number) not in kept:
            remove_tree(entry)
            removed.append(entry.name)
    return sorted(removed)
