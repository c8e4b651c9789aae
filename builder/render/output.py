"""What rendering a stack gives: the bundle's files and units, and the problems found."""

from __future__ import annotations

from typing import Any

import attrs

from activate.manifest_format import UNIT_FOLDER, Check, Hooks, State, Unit
from builder.base.errors import Problem

# a unit is the manifest's own type: the renderer fills everything but the closure
__all__ = [
    "QUADLET_DIR",
    "SYSTEMD_DIR",
    "BundleFile",
    "Check",
    "Hooks",
    "Rendered",
    "State",
    "Unit",
]

QUADLET_DIR = UNIT_FOLDER["container"]
SYSTEMD_DIR = UNIT_FOLDER["service"]


@attrs.frozen
class BundleFile:
    data: bytes
    mode: int = 0o644


@attrs.frozen
class Rendered:
    files: dict[str, BundleFile]
    units: dict[str, Unit]
    images: dict[str, str]
    problems: tuple[Problem, ...]
    secrets: dict[str, Any] = attrs.field(factory=dict)  # builder/render/features/secrets.py
    rendered: dict[str, Any] = attrs.field(factory=dict)
    hooks: Hooks = attrs.field(factory=Hooks)  # builder/render/features/hooks.py
