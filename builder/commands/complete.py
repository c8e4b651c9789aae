"""`bundle __complete WHAT [HOST]`: the words the completion scripts offer, read from the
project the shell is in: commands, options, host names, tags, generation numbers."""

from __future__ import annotations

import argparse
import os
import re
import tomllib
from pathlib import Path

from builder.bundle.listing import GENERATION_DIR
from builder.commands.common import find_project
from builder.commands.completion import subparsers
from builder.stack import stackfiles
from builder.stack.load import HOST_NAME


def _one_word(tag: object) -> bool:
    """A tag the shell can offer as one word (a line break would become two completions)."""
    return isinstance(tag, str) and tag.isprintable() and " " not in tag


def hosts(stacks: Path) -> list[str]:
    """Host names and @tags; a stack that cannot be read (as a build reads it) offers none."""
    names = sorted(p.stem for p in stacks.glob("*.toml") if HOST_NAME.fullmatch(p.stem))
    tags: set[str] = set()
    for name in names:
        try:
            text = stackfiles.read_text(stacks / f"{name}.toml", stacks)
            host = tomllib.loads(text).get("host", {})
            tags.update(t for t in host.get("tags", []) if _one_word(t))
        except (stackfiles.UnreadableFile, tomllib.TOMLDecodeError, AttributeError, TypeError):
            continue
    return names + sorted(f"@{t}" for t in tags)


def generations(bundles: Path, host: str) -> list[str]:
    folder = bundles / host
    if not re.fullmatch(r"[a-z0-9][a-z0-9_.-]*", host) or not folder.is_dir():
        return []
    numbers = [int(m.group(1)) for p in folder.iterdir() if (m := GENERATION_DIR.fullmatch(p.name))]
    return [str(n) for n in sorted(numbers, reverse=True)]


def commands(parser: argparse.ArgumentParser) -> list[str]:
    sub = subparsers(parser)
    return sorted(name for name in sub.choices if not name.startswith("_")) if sub else []


def options(parser: argparse.ArgumentParser, command: str) -> list[str]:
    sub = subparsers(parser)
    if sub is None or command not in sub.choices:
        return []
    return sorted(
        s for a in sub.choices[command]._actions for s in a.option_strings if s.startswith("--")
    )


def cmd_complete(args: argparse.Namespace) -> int:
    root = find_project(Path.cwd())
    stacks = Path(args.stacks or os.environ.get("BUNDLE_STACKS") or root / "stacks")
    bundles = Path(args.bundles or os.environ.get("BUNDLE_BUNDLES") or root / "bundles")
    if args.what == "commands":
        words = commands(args.parser)
    elif args.what == "options":
        words = options(args.parser, args.arg or "")
    elif args.what == "hosts":
        words = hosts(stacks)
    else:
        words = generations(bundles, args.arg or "")
    print("\n".join(words))
    return 0
