"""What rendering a stack gives: the bundle's files and units, and the problems found."""

from __future__ import annotations

from typing import Any

import attrs

from builder.base.errors import Problem

QUADLET_DIR = "units/quadlet"
SYSTEMD_DIR = "units/systemd"


@attrs.frozen
class BundleFile:
    data: bytes
    mode: int = 0o644


@attrs.frozen
class Unit:
    """One unit of the bundle and the bundle files it references (its closure)."""

    key: str
    kind: str
    path: str
    service: str
    files: tuple[str, ...]
    requires: tuple[str, ...]
    image: str | None
    enable: bool
    # run by the switcher after activation; not files, so not part of the closure
    checks: tuple[dict[str, Any], ...] = ()
    state: dict[str, Any] | None = None  # stateful containers: what to snapshot


@attrs.frozen
class Rendered:
    files: dict[str, BundleFile]
    units: dict[str, Unit]
    images: dict[str, str]
    problems: tuple[Problem, ...]
    secrets: dict[str, Any] = attrs.field(factory=dict)  # builder/render/features/secrets.py
    rendered: dict[str, Any] = attrs.field(factory=dict)
