"""`bundle build` and `bundle check`: stacks into generations, or only their problems."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from builder.base.words import plural
from builder.bundle import listing, uptodate
from builder.commands.common import emit_json, human_size, paths_from, project_dirs, to_paths


def built_info(
    host: str, stacks_dir: Path, bundles_dir: Path
) -> tuple[dict[str, Any], dict[str, Any]]:
    """What `build` reports for one host, and the generation's manifest as JSON.

    An up-to-date host is answered from the folder as it is (uptodate.py): no model, renderer
    or archive writer is loaded for it. Anything else goes through the whole build.
    """
    fingerprint = uptodate.input_fingerprint(stacks_dir, host)
    now = uptodate.current(stacks_dir, bundles_dir, host, fingerprint)
    manifest = None
    if now is not None:
        gen, bundle_hash, created = now.generation, now.bundle_hash, False
        try:
            manifest = json.loads((gen.path / listing.MANIFEST_NAME).read_bytes())
            size = gen.archive.stat().st_size
        except (OSError, ValueError):
            manifest = None  # damaged by hand: the whole build below says what is wrong
        if not (isinstance(manifest, dict) and isinstance(manifest.get("units"), dict)):
            manifest = None
    if manifest is None:
        # start-up: the model, the renderer and the archive writer only when something is built
        from builder.bundle.build import build

        r = build(to_paths(stacks_dir, bundles_dir), host, fingerprint)
        g = r.generation
        gen, bundle_hash, created = (
            listing.Built(g.number, g.hash12, g.path),
            r.bundle_hash,
            r.created,
        )
        manifest = r.manifest()
        size = gen.archive.stat().st_size
    info = {
        "host": host,
        "generation": gen.number,
        "hash": bundle_hash,
        "created": created,
        "path": str(gen.path),
        "archive": str(gen.archive),
        "archive_size": size,
        "units": len(manifest["units"]),
    }
    return info, manifest


def cmd_build(args: argparse.Namespace) -> int:
    stacks_dir, bundles_dir = project_dirs(args)
    results = []
    for host in args.hosts:
        info, manifest = built_info(host, stacks_dir, bundles_dir)
        info["secrets_unset"] = unset_secrets(manifest)
        results.append(info)
        if args.json:
            continue
        short = info["hash"][:12]
        if info["created"]:
            print(
                f"{host}: built generation {info['generation']} ({short}), "
                f"{plural(info['units'], 'unit')}, archive {human_size(info['archive_size'])}"
            )
            if not args.quiet:
                print(f"  {info['path']}")
        elif not args.quiet:
            print(f"{host} is up to date at generation {info['generation']} ({short})")
        note = build_note(host, manifest)
        if note and not args.quiet:
            print(note)
    if args.json:
        emit_json(results if len(results) > 1 else results[0])
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    # start-up: checking loads the model and the renderer; this module is also the quick build
    from builder.bundle.build import check

    paths = paths_from(args)
    for host in args.hosts:
        _stack, rendered = check(paths, host)
        if not args.quiet:
            print(
                f"{host}: ok, {plural(len(rendered.units), 'unit')}, "
                f"{plural(len(rendered.images), 'image')}"
            )
    return 0


# here, not in commands/secrets.py: an up-to-date build loads no secrets code
def unset_secrets(manifest: dict[str, Any]) -> list[str]:
    return sorted(n for n, e in (manifest.get("secrets") or {}).items() if not e.get("fingerprint"))


def build_note(host: str, manifest: dict[str, Any]) -> str | None:
    unset = unset_secrets(manifest)
    if not unset:
        return None
    return (
        f"  {plural(len(unset), 'secret')} not set yet ({', '.join(unset)}): "
        f"push and switch refuse until they are (bundle secrets set {host} NAME)"
    )
