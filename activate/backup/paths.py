"""Where a backup reads volumes and keeps its cache on the server."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

# The folder holding activate/: on a server, the generation this program came with.
GENERATION = Path(__file__).resolve().parents[2]
PLAN = GENERATION / "scripts/backup.json"  # written beside the launcher by `bundle build`
STABLE_ROOT = Path("/run/bundle-backup")
CACHE_ROOT = Path("/var/cache/bundle-backup")


def stable_path(volume: str) -> Path:
    return STABLE_ROOT / "volumes" / volume


def home() -> Path:
    """The running user's home (inside the user namespace the uid is 0: HOME says who)."""
    return Path(os.environ.get("HOME") or pwd.getpwuid(os.getuid()).pw_dir)


def cache_root(rootless: bool) -> Path:
    return home() / ".cache/bundle-backup" if rootless else CACHE_ROOT
