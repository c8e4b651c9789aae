"""What every command shares: where the project is, how sizes and JSON are printed."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any


def find_project(start: Path) -> Path:
    """The nearest folder, from `start` upwards, that has a stacks/ folder."""
    for folder in (start, *start.parents):
        if (folder / "stacks").is_dir():
            return folder
    return start


def project_dirs(args: argparse.Namespace) -> tuple[Path, Path]:
    """The stacks folder (which must exist) and the bundles folder a command works on."""
    root = find_project(Path.cwd())
    stacks = Path(args.stacks or os.environ.get("BUNDLE_STACKS") or root / "stacks")
    bundles = Path(args.bundles or os.environ.get("BUNDLE_BUNDLES") or root / "bundles")
    if not stacks.is_dir():
        # start-up: the errors' module (attrs) only when it is needed
        from builder.base.errors import BundleError

        raise BundleError(
            f"{stacks}: no stacks folder here; run bundle in your project or pass --stacks DIR", 2
        )
    return stacks, bundles


def paths_from(args: argparse.Namespace) -> Any:
    return to_paths(*project_dirs(args))


def to_paths(stacks_dir: Path, bundles_dir: Path) -> Any:
    # start-up: the model's types (attrs) only for commands that use them
    from builder.bundle.paths import Paths

    return Paths(stacks_dir, bundles_dir)


def use_colour(stream: Any) -> bool:
    return stream.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def emit_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def print_repaired(args: argparse.Namespace, what: str) -> None:
    # shown even with --quiet (on stderr then): the server was damaged and this command fixed it
    aside = args.quiet or getattr(args, "json", False)  # --json keeps stdout for the JSON
    print(f"  repaired first: {what}", file=sys.stderr if aside else sys.stdout)
