"""A compose port, in either syntax, as the stack's `[IP:]HOST_PORT:CONTAINER_PORT[/proto]`.

Compose reads `[HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTOCOL]` and the long form
(`target`, `published`, `host_ip`, `protocol`). An empty host address (`:2283:2283`, what
`${EXPOSE_PORT-:2283:2283}` gives) means every address, as no address does; an empty host port
(`8080`, `127.0.0.1::80`) is a random one in compose and the same port in the stack.
"""

from __future__ import annotations

from typing import Any

import attrs

from builder.importer.report import Note
from builder.stack.ports import parse_port

LONG_KEYS = {"target", "published", "host_ip", "protocol"}
# Only names and swarm's routing: a single host publishes the same way with or without them.
NO_EFFECT = {"name", "app_protocol", "mode"}
SHORT_FORM = "write one [IP:]HOST_PORT:CONTAINER_PORT per port (no ranges)"


@attrs.frozen
class Port:
    text: str | None  # None: not translated
    notes: tuple[Note, ...] = ()


def _parts(entry: Any, at: str) -> tuple[str, str, str, str, list[Note]] | Note:
    """(host_ip, published, target, protocol) of either syntax, or why it cannot be read."""
    if isinstance(entry, dict):
        notes = [Note(f"{at}.{k}", "not translated", "the stack publishes the port without it")
                 for k in sorted(set(map(str, entry)) - LONG_KEYS - NO_EFFECT)]  # fmt: skip
        published = entry.get("published")
        return (str(entry.get("host_ip") or ""), "" if published is None else str(published),
                str(entry.get("target", "")), str(entry.get("protocol") or ""), notes)  # fmt: skip
    text = str(entry)
    text, _, proto = text.partition("/")
    ip = ""
    if text.startswith("["):
        end = text.find("]:")
        if end < 0:
            return Note(at, f"{entry!r} not translated", SHORT_FORM)
        ip, text = text[: end + 1], text[end + 2 :]
    words = text.split(":")
    if len(words) > 3 or (ip and len(words) != 2):
        return Note(at, f"{entry!r} not translated", "put an IPv6 host address in brackets")
    if len(words) == 3:
        ip = words.pop(0)
    published = words[0] if len(words) == 2 else ""
    return ip, published, words[-1], proto, []


def stack_port(entry: Any, at: str) -> Port:
    parts = _parts(entry, at)
    if isinstance(parts, Note):
        return Port(None, (parts,))
    ip, published, target, proto, notes = parts
    if proto and proto not in ("tcp", "udp"):
        return Port(None, (*notes, Note(at, f"{entry!r}: the protocol {proto} is not "
                                            "translated", "a stack publishes tcp or udp")))  # fmt: skip
    if ip in ("0.0.0.0", "") and not published and not target:
        return Port(None, (*notes, Note(at, f"{entry!r} not translated", SHORT_FORM)))
    if not published:
        notes.append(Note(at, f"{entry!r} publishes a random host port in compose",
                          f"the stack publishes it on the same port ({target}); set HOST:CONTAINER"))  # fmt: skip
        published = target
    text = (
        (f"{ip}:" if ip else "") + f"{published}:{target}" + ("/udp" if proto == "udp" else "")
    )  # tcp is the default
    try:
        parse_port(text)
    except ValueError as exc:
        why = str(exc).removeprefix(repr(text)).lstrip(": ")
        todo = SHORT_FORM if "-" in text or why.startswith("is not") else why
        return Port(None, (*notes, Note(at, f"{entry!r} not translated", todo)))
    return Port(text, tuple(notes))
