"""Notifications: the stack's [notify] table becomes `notify/notify.json` in the bundle, which
the switcher reads after every history line it writes (activate/notify.py).

A URL or token given as a secret's name is a file of its own under `notify/secret/`, holding
the secret's marker: the switcher completes it on the server (docs/secrets.md), so no value
enters the bundle, and notify.json names the completed file instead of the value.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterator
from typing import Any

from builder.base.errors import Problem
from builder.render.output import BundleFile
from builder.secrets.files import marker
from builder.stack.load import KeyPath, RawStack
from builder.stack.model import Notify, Stack
from builder.stack.names import NAME, NAME_HINT

CONFIG_PATH = "notify/notify.json"
SECRET_DIR = "notify/secret"
UNIT = "bundle-notify"  # a name for the secrets' "used by": no unit of its own
KINDS = ("webhook", "ntfy", "healthchecks")
EVENTS = ("switched", "rolled back", "rollback failed", "failed units")


def problems(stack: Stack, raw: RawStack) -> Iterator[Problem]:
    n = stack.notify
    if n is None:
        return
    at: KeyPath = ("notify",)
    p = raw.problem
    for kind in KINDS:
        url, secret = getattr(n, kind), getattr(n, f"{kind}_secret")
        if url is not None and secret is not None:
            yield p((*at, kind), f"give {kind} or {kind}_secret, not both")
        parts = urllib.parse.urlsplit(url) if url is not None else None
        if parts is not None and (
            parts.scheme not in ("http", "https") or not parts.hostname or " " in url
        ):
            yield p((*at, kind), f"{url!r}: write an http:// or https:// URL")
    for key in ("webhook_secret", "ntfy_secret", "ntfy_token_secret", "healthchecks_secret"):
        name = getattr(n, key)
        if name is not None and not NAME.fullmatch(name):
            yield p((*at, key), f"invalid secret name {name!r}: {NAME_HINT}")
    if n.ntfy_token_secret is not None and n.ntfy is None and n.ntfy_secret is None:
        yield p((*at, "ntfy_token_secret"), "a token goes with ntfy (the topic's URL)")
    for i, event in enumerate(n.events):
        if event not in EVENTS:
            yield p((*at, "events", i), f"{event!r}: use some of {', '.join(EVENTS)}")
    if not any(getattr(n, k) or getattr(n, f"{k}_secret") for k in KINDS):
        yield p(at, "name at least one of webhook, ntfy, healthchecks (or their _secret)")


def render(r: Any) -> None:
    """Add notify/notify.json (and its secrets' files) to a render.py _Renderer."""
    n: Notify | None = r.stack.notify
    if n is None:
        return
    targets = [_target(r, n, kind) for kind in KINDS]
    config = {
        "format": 1,
        "host": r.stack.host.name,
        "events": list(n.events),
        "targets": [t for t in targets if t is not None],
    }
    data = (json.dumps(config, indent=2, sort_keys=True) + "\n").encode()
    r.files[CONFIG_PATH] = BundleFile(data, 0o644)


def _target(r: Any, n: Notify, kind: str) -> dict[str, Any] | None:
    url, secret = getattr(n, kind), getattr(n, f"{kind}_secret")
    if url is None and secret is None:
        return None
    target: dict[str, Any] = {"kind": kind}
    if url is not None:
        target["url"] = url
    else:
        target["url_file"] = _secret_file(r, f"{kind}-url", secret, f"{kind}_secret")
    if kind == "ntfy" and n.ntfy_token_secret is not None:
        target["token_file"] = _secret_file(
            r, "ntfy-token", n.ntfy_token_secret, "ntfy_token_secret"
        )
    return target


def _secret_file(r: Any, key: str, name: str, field: str) -> str:
    path = f"{SECRET_DIR}/{key}"
    r.files[path] = BundleFile(marker(name).encode(), 0o600)
    return str(r.host_path(path, UNIT, "service", ("notify", field)))
