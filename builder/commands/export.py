"""`bundle export HOST --kube`: the stack as Kubernetes manifests, and what did not translate."""

from __future__ import annotations

import argparse
from pathlib import Path

from builder.base.words import plural
from builder.bundle.export import default_out, export_kube, write_folder
from builder.commands.common import paths_from


def cmd_export(args: argparse.Namespace) -> int:
    paths = paths_from(args)
    result = export_kube(paths, args.host, args.ingress_class)
    out = Path(args.out) if args.out else default_out(paths.stacks_dir.parent, args.host)
    write_folder(out, result.files)
    if args.quiet:
        return 0
    count = sum(result.kinds.values())
    out = _shown(out)
    print(f"{args.host}: exported {plural(count, 'object')} to {out} (kubectl apply -k {out})")
    if result.secrets:
        print(f"  secrets to create first (names only, see {out}/README.md):")
        print("    " + ", ".join(result.secrets))
    if result.notes:
        print(f"  not translated ({plural(len(result.notes), 'item')}, also in {out}/README.md):")
        for n in result.notes:
            print(f"    {n.where}: {n.what}; instead: {n.instead}")
    return 0


def _shown(path: Path) -> Path:
    """The folder as the user would type it: relative to here when it is below here."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return path
