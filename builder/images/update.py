"""`bundle update HOST…`: raise pinned versions to what `bundle outdated` finds, refresh the lock.

Each `version` is changed in the file that sets it (a shared include or the host's own file),
with tomlkit, so comments, quoting and layout stay as they were: the stack file's diff is one
line per raised version. Without --major a version stays in its major. A host with a lock
(stacks/lock/HOST.json, or `[host] lock = true`) has it written again afterwards, which also
catches a tag that moved on the registry.

Exit codes, for a scheduled job: 0 something changed (a build would differ), 3 nothing to
update, 1 a registry could not be asked (what could be checked is still updated), 2 bad input.
"""

from __future__ import annotations

import difflib
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from builder.base.errors import InputError
from builder.bundle.build import load_stack
from builder.bundle.lockfile import lock_path, write_lock
from builder.images.lock import relock
from builder.images.outdated import check_hosts, update_target

NOTHING = 3
KeyPath = tuple[str | int, ...]


@attrs.frozen
class Raise:
    """One version to change: where it is set, from what, to what."""

    host: str
    service: str
    file: Path
    key: KeyPath
    old: str
    new: str


def set_version(text: str, key: KeyPath, old: str, new: str, shown: str) -> str:
    """`text` with the string at `key` changed from `old` to `new`, and nothing else."""
    # start-up: tomlkit only when a stack file is edited
    import tomlkit
    from tomlkit.items import String

    doc = tomlkit.parse(text)
    node: Any = doc
    try:
        for part in key[:-1]:
            node = node[part]
        item = node.item(key[-1]) if hasattr(node, "item") else node[key[-1]]
    except (KeyError, IndexError, TypeError):
        item = None
    dotted = ".".join(str(k) for k in key)
    if not isinstance(item, String) or str(item) != old:
        raise InputError(f"{shown}: {dotted} is not the string {old!r} here; edit it by hand")
    value = tomlkit.string(new, literal=item.as_string().startswith("'"))
    value.trivia.indent = item.trivia.indent
    value.trivia.comment_ws = item.trivia.comment_ws
    value.trivia.comment = item.trivia.comment
    value.trivia.trail = item.trivia.trail
    node[key[-1]] = value
    return tomlkit.dumps(doc)


def plan(
    paths: Any, hosts: Sequence[str], major: bool, only: Sequence[str]
) -> tuple[list[Raise], list[str]]:
    """The versions to raise, and one error line per image that could not be checked."""
    # start-up: the raw loader (origins of each key) only for this command
    from builder.stack.load import load_stack as load_raw

    rows = check_hosts(paths, hosts)
    known = {r.service for r in rows}
    for name in only:
        if name not in known:
            raise InputError(
                f"--only {name}: no such enabled container in {', '.join(hosts)} "
                f"(known: {', '.join(sorted(known)) or 'none'})"
            )
    raises, errors = [], []
    raws = {host: load_raw(paths.stacks_dir, host) for host in hosts}
    for r in rows:
        if only and r.service not in only:
            continue
        if r.error is not None:
            errors.append(f"{r.host}: {r.service}: {r.error}")
            continue
        target = update_target(r, major)
        if target is None:
            continue
        key: KeyPath = ("containers", r.service, "version")
        file = raws[r.host].origins.get(key)
        if file is None:
            raise InputError(f"{r.host}: containers.{r.service}.version: no file sets it")
        raises.append(Raise(r.host, r.service, file, key, r.pinned, target))
    return raises, errors


def _display(file: Path, stacks_dir: Path) -> str:
    try:
        return f"stacks/{file.resolve().relative_to(stacks_dir.resolve()).as_posix()}"
    except ValueError:
        return str(file)


def _write(path: Path, text: str) -> None:
    """Replace a stack file by one rename, keeping its mode."""
    mode = path.stat().st_mode & 0o7777
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def run_update(
    paths: Any, hosts: Sequence[str], major: bool, only: Sequence[str], dry_run: bool
) -> int:
    raises, errors = plan(paths, hosts, major, only)
    texts: dict[Path, tuple[str, str]] = {}
    done: set[tuple[Path, KeyPath]] = set()
    for r in raises:
        if (r.file, r.key) in done:  # a shared file read by several hosts: changed once
            continue
        done.add((r.file, r.key))
        before = texts[r.file][0] if r.file in texts else r.file.read_bytes().decode("utf-8")
        after = texts[r.file][1] if r.file in texts else before
        shown = _display(r.file, paths.stacks_dir)
        texts[r.file] = (before, set_version(after, r.key, r.old, r.new, shown))
    for file, (before, after) in sorted(texts.items()):
        shown = _display(file, paths.stacks_dir)
        sys.stdout.writelines(
            difflib.unified_diff(
                before.splitlines(keepends=True),
                after.splitlines(keepends=True),
                f"a/{shown}",
                f"b/{shown}",
            )
        )
        if not dry_run:
            _write(file, after)
    locked = [h for h in dict.fromkeys(hosts) if _has_lock(paths, h)]
    lock_changed = False
    if not dry_run and locked:
        for relocked in relock(paths, locked):
            if relocked.new is None:
                errors += [f"{relocked.host}: {e}" for e in relocked.errors]
                continue
            for change in relocked.image_changes():
                print(f"{relocked.host}: image {change.line()}")
            if relocked.changed:
                write_lock(paths.stacks_dir, relocked.new)
                lock_changed = True
    for r in raises:
        if dry_run or r.host not in locked:
            print(f"{r.host}: image {r.service}: {r.old} -> {r.new}")
    for line in errors:
        print(f"error: {line}", file=sys.stderr)
    if errors:
        return 1
    if texts or lock_changed:
        if dry_run:
            print("dry run: nothing written")
        return 0
    print(f"{', '.join(dict.fromkeys(hosts))}: nothing to update")
    return NOTHING


def _has_lock(paths: Any, host: str) -> bool:
    if lock_path(paths.stacks_dir, host).is_file():
        return True
    return bool(load_stack(paths, host).host.lock)
