"""`bundle lock HOST…`: ask each image's registry what its tag names now, and write the lock.

One manifest request per distinct image and tag (a few at a time). A registry that fails leaves
the host's lock as it was: a lock is written whole or not at all (builder/bundle/lockfile.py).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import attrs

from builder.base.words import plural
from builder.bundle.build import load_stack
from builder.bundle.diff import ImageChange
from builder.bundle.lockfile import Lock, Locked, lockable, read_lock, write_lock
from builder.images.registry import RegistryClient, RegistryProblem, locate

WORKERS = 8
Resolver = Callable[[str, str], str]  # (image, tag) -> sha256:…


@attrs.frozen
class Relock:
    """A host's lock before and after: what a reviewer reads."""

    host: str
    old: Lock | None
    new: Lock | None  # None: a registry failed, the lock stays as it was
    errors: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return self.new is not None and (self.old is None or self.old.dumps() != self.new.dumps())

    def image_changes(self) -> list[ImageChange]:
        if self.new is None:
            return []
        old = self.old.images if self.old else {}
        new = self.new.images
        return [
            ImageChange(
                s,
                old[s].ref() if s in old else None,
                new[s].ref() if s in new else None,
            )
            for s in sorted(set(old) | set(new))
            if old.get(s) != new.get(s)
        ]


def registry_resolver() -> Resolver:
    client = RegistryClient()

    def resolve(image: str, tag: str) -> str:
        return client.digest(locate(image), tag)

    return resolve


def relock(paths: Any, hosts: Sequence[str], resolve: Resolver | None = None) -> list[Relock]:
    """Resolve every lockable image of each host; nothing is written here."""
    wanted: dict[str, dict[str, tuple[str, str]]] = {}
    for host in hosts:
        stack = load_stack(paths, host)
        wanted[host] = {
            name: (c.image, c.version)
            for name, c in stack.enabled_containers().items()
            if lockable(c)
        }
    pairs = sorted({pair for services in wanted.values() for pair in services.values()})
    for image, _ in pairs:
        locate(image)  # bad registry settings are an input error before any request
    ask = resolve or registry_resolver()

    def fetch(pair: tuple[str, str]) -> tuple[tuple[str, str], str | None, str | None]:
        try:
            return pair, ask(*pair), None
        except RegistryProblem as e:
            return pair, None, str(e)

    found: dict[tuple[str, str], tuple[str | None, str | None]] = {}
    if pairs:
        with ThreadPoolExecutor(max_workers=min(WORKERS, len(pairs))) as pool:
            for pair, digest, error in pool.map(fetch, pairs):
                found[pair] = (digest, error)
    out = []
    for host in hosts:
        services = wanted[host]
        errors = tuple(
            f"{name}: {found[pair][1]}"
            for name, pair in sorted(services.items())
            if found[pair][1] is not None
        )
        old = read_lock(paths.stacks_dir, host)
        if errors:
            out.append(Relock(host, old, None, errors))
            continue
        images = {
            name: Locked(image, tag, found[(image, tag)][0] or "")
            for name, (image, tag) in services.items()
        }
        out.append(Relock(host, old, Lock(host, images)))
    return out


def run_lock(paths: Any, hosts: Sequence[str]) -> int:
    """Write each host's lock; print what changed. Exit 1 when a registry failed."""
    failed = 0
    for r in relock(paths, hosts):
        shown = f"stacks/lock/{r.host}.json"
        if r.new is None:
            for line in r.errors:
                print(f"error: {r.host}: {line}", file=sys.stderr)
            print(f"error: {r.host}: {shown} left as it was", file=sys.stderr)
            failed += 1
            continue
        for change in r.image_changes():
            print(f"{r.host}: image {change.line()}")
        if r.changed:
            write_lock(paths.stacks_dir, r.new)
            print(f"{r.host}: wrote {shown} ({plural(len(r.new.images), 'image')})")
        else:
            print(f"{r.host}: {shown} up to date ({plural(len(r.new.images), 'image')})")
    return 1 if failed else 0
