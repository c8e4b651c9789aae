"""`bundle import`: a docker-compose file into a stack file and a report."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from builder.commands.common import find_project
from builder.importer.compose import import_compose, report


def cmd_import(args: argparse.Namespace) -> int:
    root = find_project(Path.cwd())
    stacks = Path(args.stacks or os.environ.get("BUNDLE_STACKS") or root / "stacks")
    written, result = import_compose(Path(args.compose), args.host, stacks, args.force)
    print(report(written, result, args.host))
    return 0
