"""A host's generation folders, and what is known of each without reading its manifest:
standard library only, so `bundle generations` and an up-to-date `bundle build` load no model."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import NamedTuple

from activate import strict_json

GENERATION_DIR = re.compile(r"^([0-9]+)-([0-9a-f]{12})\Z")
MANIFEST_NAME = "manifest.json"  # activate/manifest_format.py names it too; a test keeps them equal
BUILD_LOG = "builds.jsonl"


class Built(NamedTuple):
    """A generation folder: its number, its 12-hex hash prefix, where it is."""

    number: int
    short: str
    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def archive(self) -> Path:
        return self.path.with_name(self.path.name + ".tar.zst")


def generation_dirs(folder: Path) -> list[Built]:
    """The complete generation folders of one host (a manifest inside), oldest first."""
    if not folder.is_dir():
        return []
    found = []
    for entry in folder.iterdir():
        m = GENERATION_DIR.fullmatch(entry.name)
        if m and (entry / MANIFEST_NAME).is_file():
            found.append(Built(int(m.group(1)), m.group(2), entry))
    return sorted(found, key=lambda g: g.number)


def build_times(folder: Path) -> dict[str, str]:
    """When each generation was built, from the build log (a damaged line is skipped)."""
    log = folder / BUILD_LOG
    times: dict[str, str] = {}
    if log.is_file():
        for line in log.read_text().splitlines():
            with contextlib.suppress(ValueError, KeyError, TypeError):
                entry = strict_json.loads(line, BUILD_LOG, "")
                times[entry["generation"]] = entry["built_at"]
    return times
