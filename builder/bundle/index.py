"""The index of a host's built generations: one small file beside them, so that listing a
thousand generations reads one file instead of a thousand manifests.

A generation folder is content-addressed (`<N>-<hash12>`), so what the index keeps about it (the
number of units) never changes while the folder exists. The folder listing stays the truth: a
generation the index lacks is read from its manifest and added, one it names that is gone is
dropped, and an index that is missing or unreadable is rebuilt from the manifests.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path

INDEX_NAME = ".generations.json"
FORMAT = 1


def read(folder: Path) -> dict[str, int]:
    """Units per generation name as the index says; empty when it is missing or unreadable."""
    try:
        data = json.loads((folder / INDEX_NAME).read_bytes())
    except (OSError, ValueError, RecursionError):
        return {}
    units = data.get("units") if isinstance(data, dict) and data.get("format") == FORMAT else None
    if not isinstance(units, dict):
        return {}
    return {k: v for k, v in units.items() if type(v) is int and v >= 0}


def write(folder: Path, units: dict[str, int]) -> None:
    """Replace the index in one rename; a reader sees the old index or the new, never half."""
    # start-up: tempfile imports shutil (bz2, lzma: ~8 ms), needed only when the index changes
    import tempfile

    body = json.dumps({"format": FORMAT, "units": units}, sort_keys=True).encode() + b"\n"
    # not `.tmp-*`: a build removes those as leftovers of a crash, even while this one writes
    fd, tmp = tempfile.mkstemp(prefix=".generations-", suffix=".part", dir=folder)
    try:
        os.fchmod(fd, 0o644)  # as the manifests beside it, not mkstemp's 0600
        with os.fdopen(fd, "wb") as out:
            out.write(body)
        os.replace(tmp, folder / INDEX_NAME)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def in_step(folder: Path, names: Iterable[str], units_of: Callable[[str], int]) -> dict[str, int]:
    """Units per generation for exactly `names` (the folder listing); manifests are read
    (`units_of`) only for names the index lacks, and the index is written back if it changed."""
    names = list(names)
    known = read(folder)
    units = {name: known[name] if name in known else units_of(name) for name in names}
    if units != known:
        write(folder, units)
    return units


def update(folder: Path, present: Iterable[str], added: dict[str, int] | None = None) -> None:
    """After a build or a removal: keep the entries still in the listing `present`, plus
    `added`; what the index lacks is left for `in_step` to read."""
    kept = set(present)
    entries = {k: v for k, v in read(folder).items() if k in kept}
    write(folder, {**entries, **(added or {})})
