"""`bundle build` and `bundle check`: stacks into generations, or only their problems."""

from __future__ import annotations

import argparse

from builder.base.words import plural
from builder.bundle.build import build, check
from builder.commands.common import emit_json, human_size, paths_from
from builder.commands.secrets import build_note, unset_secrets


def cmd_build(args: argparse.Namespace) -> int:
    paths = paths_from(args)
    results = []
    for host in args.hosts:
        r = build(paths, host)
        manifest = r.manifest()
        info = {
            "host": host,
            "generation": r.generation.number,
            "hash": r.bundle_hash,
            "created": r.created,
            "path": str(r.generation.path),
            "archive": str(r.generation.archive),
            "archive_size": r.generation.archive.stat().st_size,
            "units": len(manifest["units"]),
        }
        info["secrets_unset"] = unset_secrets(manifest)
        results.append(info)
        if args.json:
            continue
        if r.created:
            print(
                f"{host}: built generation {info['generation']} ({r.bundle_hash[:12]}), "
                f"{plural(info['units'], 'unit')}, archive {human_size(info['archive_size'])}"
            )
            if not args.quiet:
                print(f"  {r.generation.path}")
        elif not args.quiet:
            print(f"{host} is up to date at generation {info['generation']} ({r.bundle_hash[:12]})")
        note = build_note(host, manifest)
        if note and not args.quiet:
            print(note)
    if args.json:
        emit_json(results if len(results) > 1 else results[0])
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    paths = paths_from(args)
    for host in args.hosts:
        _stack, rendered = check(paths, host)
        if not args.quiet:
            print(
                f"{host}: ok, {plural(len(rendered.units), 'unit')}, "
                f"{plural(len(rendered.images), 'image')}"
            )
    return 0
