"""`bundle outdated HOST…`: each service's pinned version next to what its registry offers.

One tag list per distinct image (asked in parallel, a few at a time); see builder/images/versions.py
for how tags are compared and builder/images/registry.py for how registries are asked. A
registry that fails is one line for its image; the other services are still shown, and the
command exits 1 at the end.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import attrs

from builder.base.words import plural
from builder.bundle.build import load_stack
from builder.images.registry import RegistryClient, RegistryProblem, locate
from builder.images.versions import Comparison, compare, newest_release

WORKERS = 8
BEHIND = "*"


@attrs.frozen
class Row:
    host: str
    service: str
    image: str
    pinned: str  # the tag, or @sha256:… for a digest-only pin
    newest_in_major: str | None = None
    newest: str | None = None
    behind_in_major: bool = False
    behind: bool = False
    moving: bool = False  # a major-only tag like 29-apache: it follows its major by itself
    note: str | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            **attrs.asdict(self),
            "update": update_target(self, major=False),
            "update_major": update_target(self, major=True),
        }


def update_target(row: Row, major: bool) -> str | None:
    """The tag `bundle update` (with --major: across majors) raises this row's version to.

    A moving tag and a digest-only pin are never raised: the lock follows them instead.
    """
    if row.error is not None or row.moving or row.pinned.startswith("@"):
        return None
    if major:
        return row.newest if row.behind else None
    return row.newest_in_major if row.behind_in_major else None


def _row(
    host: str,
    service: str,
    image: str,
    version: str | None,
    digest: str | None,
    tags: list[str] | None,
    error: str | None,
) -> Row:
    pinned = version if version is not None else f"@{digest}"
    if error is not None or tags is None:
        return Row(host, service, image, pinned, error=error)
    if version is None:
        return Row(
            host,
            service,
            image,
            pinned,
            newest=newest_release(tags),
            note="pinned by digest: newest is the newest plain release tag",
        )
    c: Comparison = compare(version, tags)
    return Row(
        host,
        service,
        image,
        pinned,
        c.newest_in_major,
        c.newest,
        c.behind_in_major,
        c.behind,
        c.moving,
        c.note,
    )


def check_hosts(
    paths: Any,
    hosts: Sequence[str],
    list_tags: Callable[[str], list[str]] | None = None,
) -> list[Row]:
    """One row per enabled container of each host, in stack order."""
    services = []
    for host in hosts:
        stack = load_stack(paths, host)
        for name, c in stack.enabled_containers().items():
            services.append((host, name, c.image, c.version, c.digest))

    client = RegistryClient()

    def from_registry(image: str) -> list[str]:
        return client.tags(locate(image))

    ask = list_tags or from_registry

    images = sorted({s[2] for s in services})
    # locate() reads the environment once per image; bad settings are an input error up front
    for image in images:
        locate(image)
    results: dict[str, tuple[list[str] | None, str | None]] = {}

    def fetch(image: str) -> tuple[str, list[str] | None, str | None]:
        try:
            return image, ask(image), None
        except RegistryProblem as e:
            return image, None, str(e)

    if images:
        with ThreadPoolExecutor(max_workers=min(WORKERS, len(images))) as pool:
            for image, tags, error in pool.map(fetch, images):
                results[image] = (tags, error)
    return [_row(h, n, i, v, d, *results[i]) for h, n, i, v, d in services]


def format_table(rows: list[Row], with_host: bool) -> str:
    def cell(value: str | None, behind: bool) -> str:
        if value is None:
            return "-"
        return f"{value} {BEHIND}" if behind else value

    head = ["SERVICE", "IMAGE", "PINNED", "NEWEST IN MAJOR", "NEWEST"]
    if with_host:
        head.insert(0, "HOST")
    table = [head]
    for r in rows:
        pinned = r.pinned[:20] if r.pinned.startswith("@sha256:") else r.pinned
        if r.error is not None:
            line = [r.service, r.image, pinned, "?", "?"]
        else:
            line = [
                r.service,
                r.image,
                pinned,
                cell(r.newest_in_major, r.behind_in_major),
                cell(r.newest, r.behind),
            ]
        if with_host:
            line.insert(0, r.host)
        table.append(line)
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    out = [
        "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in table
    ]
    if any(r.behind for r in rows):
        out.append(f"{BEHIND} newer than the pinned version")
    for r in rows:
        who = r.service if not with_host else f"{r.host}/{r.service}"
        target, across = update_target(r, major=False), update_target(r, major=True)
        if target:
            out.append(f"{who}: bundle update raises {r.pinned} -> {target}")
        if across and across != target:
            out.append(f"{who}: bundle update --major raises {r.pinned} -> {across}")
    for r in rows:
        if r.note and r.error is None:
            out.append(f"{r.service if not with_host else f'{r.host}/{r.service}'}: {r.note}")
    return "\n".join(out) + "\n"


def run_outdated(paths: Any, hosts: Sequence[str], as_json: bool, quiet: bool = False) -> int:
    rows = check_hosts(paths, hosts)
    if as_json:
        sys.stdout.write(json.dumps([r.to_json() for r in rows], indent=2, sort_keys=True) + "\n")
    elif not quiet or any(r.behind or r.error for r in rows):
        shown = rows if not quiet else [r for r in rows if r.behind or r.error]
        sys.stdout.write(format_table(shown, with_host=len(set(hosts)) > 1))
    failed: dict[str, list[str]] = {}
    errors: dict[str, str] = {}
    for r in rows:
        if r.error is not None:
            failed.setdefault(r.image, []).append(
                r.service if len(set(hosts)) == 1 else f"{r.host}/{r.service}"
            )
            errors[r.image] = r.error
    for image, services in failed.items():
        print(f"error: {', '.join(services)}: {errors[image]}", file=sys.stderr)
    if failed:
        print(
            f"error: {len(failed)} of {plural(len({r.image for r in rows}), 'image')} could not be checked",
            file=sys.stderr,
        )
        return 1
    return 0
