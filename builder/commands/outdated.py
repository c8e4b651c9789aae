"""`bundle outdated`: newer image versions in the registries."""

from __future__ import annotations

import argparse

from builder.commands.common import paths_from
from builder.images.outdated import run_outdated


def cmd_outdated(args: argparse.Namespace) -> int:
    return run_outdated(paths_from(args), args.hosts, args.json, args.quiet)
