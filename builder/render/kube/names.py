"""Kubernetes names from stack names, and what an export could not carry over.

Every name an export writes goes through `label` or `key`, so no stack name, however it is
spelt, can make an object Kubernetes refuses; `collisions` finds two stack names that became one.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

import attrs

_NOT_LABEL = re.compile(r"[^a-z0-9-]+")
_NOT_KEY = re.compile(r"[^-._a-zA-Z0-9]+")
MAX_LABEL = 63


@attrs.frozen
class Note:
    """One thing the export did not translate: where (a stack key path), what, the k8s way."""

    where: str
    what: str
    instead: str


def label(*parts: str) -> str:
    """A DNS-1035 label (Service, Deployment, volume names): lower-case letters, digits and '-',
    starting with a letter, at most 63 characters (a long one keeps a hash of the whole)."""
    text = "-".join(_NOT_LABEL.sub("-", p.lower()).strip("-") for p in parts if p)
    text = re.sub(r"-{2,}", "-", text).strip("-") or "x"
    if not text[0].isalpha():
        text = f"x-{text}"
    if len(text) > MAX_LABEL:
        digest = hashlib.sha256(text.encode()).hexdigest()[:8]
        text = f"{text[: MAX_LABEL - 9].rstrip('-')}-{digest}"
    return text


def key(text: str) -> str:
    """A ConfigMap or Secret data key: letters, digits, '-', '_' and '.'."""
    return _NOT_KEY.sub("_", text).strip(".") or "file"


def collisions(names: Iterable[tuple[str, str, str]]) -> list[str]:
    """(kind, k8s name, what it came from): a line for each name two sources share."""
    seen: dict[tuple[str, str], str] = {}
    told: set[frozenset[str]] = set()  # one line per pair, however many objects they share
    out = []
    # objects (Deployment, Secret) before their parts (a container of, a volume of): the
    # clearer line of a pair is the one told
    for kind, name, origin in sorted(names, key=lambda n: n[0][:1].islower()):
        first = seen.setdefault((kind, name), origin)
        if first != origin and frozenset((first, origin)) not in told:
            told.add(frozenset((first, origin)))
            out.append(
                f"{origin} and {first} both become the {kind} {name!r} in Kubernetes "
                "(names are lower-case, '_' becomes '-'): rename one of them"
            )
    return out
