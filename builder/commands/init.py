"""`bundle init`: a new project from the scaffold."""

from __future__ import annotations

import argparse
from pathlib import Path

from builder.commands.scaffold import scaffold


def cmd_init(args: argparse.Namespace) -> int:
    root = Path(args.directory)
    written = scaffold(root)
    if not args.quiet:
        for path in written:
            print(f"wrote {path}")
        print(
            f"next: set address in {root / 'stacks/web1.toml'}, then "
            f"cd {root} && bundle check web1 && bundle build web1 (docs/getting-started.md)"
        )
    return 0
