"""`health`: one round of the health gate against what runs now, changing nothing.

A canary's watch (`bundle switch --canary HOST --canary-wait 5m`) asks this every few seconds:
every unit of the active generation is up and every check it declares passes, right now.
"""

from __future__ import annotations

from dataclasses import dataclass

from .activation import health_reply
from .errors import Failed
from .health import gate
from .protocol import HealthReport, Reply
from .store import Store
from .systemd import Services


@dataclass(frozen=True, kw_only=True)
class Watched(Reply):
    """The active generation and how its units and checks are doing now."""

    generation: int | None = None
    health: HealthReport | None = None


def health_now(store: Store, services: Services) -> Watched:
    current = store.current()
    if current is None:
        raise Failed("no generation is active here; nothing to check")
    manifest = store.load_manifest(current)
    # no wait and no settle window: a single round says how things are at this moment
    found = gate(services, manifest, timeout=0, settle=0)
    return Watched(generation=current.number, health=health_reply(found))
