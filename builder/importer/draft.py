"""What one `bundle import` collects while it translates the services of a compose file."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from builder.importer.credentials import FoundSecrets
from builder.importer.interpolate import Unset
from builder.importer.report import Note

NAME = re.compile(r"[^a-z0-9_-]+")


@attrs.define
class Draft:
    """What the whole import collects while it translates the services."""

    host: str
    base_dir: Path
    variables: Mapping[str, str]
    names: dict[str, str]  # compose service -> container name
    networks: dict[str, str]  # compose network -> stack network
    default_network: str
    top_volumes: dict[str, str]  # compose volume -> stack volume
    top_secrets: dict[str, Any]
    notes: list[Note] = attrs.field(factory=list)
    unset: list[Unset] = attrs.field(factory=list)
    secrets: FoundSecrets = attrs.field(factory=FoundSecrets)
    volumes: set[str] = attrs.field(factory=set)
    used_networks: set[str] = attrs.field(factory=set)
    healthy_waits: dict[str, list[str]] = attrs.field(factory=dict)  # dependency -> waiters

    def note(self, where: str, what: str, todo: str = "") -> None:
        self.notes.append(Note(where, what, todo))


def unit_name(name: str) -> str:
    return NAME.sub("-", name.lower()).strip("-_")[:63] or "service"
