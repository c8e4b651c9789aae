"""Which image tags are newer than a pinned one: semver-aware, variant-aware, pure.

A tag is read as PREFIX NUMBERS PRERELEASE SUFFIX:

    v1.8.2            prefix "v", numbers (1, 8, 2)
    29.0.1-apache     numbers (29, 0, 1), suffix "-apache" (the variant)
    16.6-alpine       numbers (16, 6), suffix "-alpine"
    2.1.0-rc1         numbers (2, 1, 0), pre-release rc 1
    2.1.0-rc.1-alpine numbers (2, 1, 0), pre-release rc 1, suffix "-alpine"
    2024.10.5         numbers (2024, 10, 5): calendar versions work the same way

Tags that do not start with a number (`latest`, `bookworm`, `sha-1a2b3c`) are not versions
and are never suggested.

A pinned tag is compared only with tags of its *family*: the same prefix, the same suffix and
the same shape (count of numbers), so `29.0.1-apache` is compared with `X.Y.Z-apache` only and
`7.4-alpine` with `X.Y-alpine` only. A major-only tag (`29-apache`, `16`) moves: it follows the
newest release of its major, so it is compared with the longer tags of its prefix and suffix,
and its "newest in major" is the newest `29.*-apache` it currently stands for.

Pre-releases (alpha, beta, rc, pre, preview, dev) are ignored unless the pinned tag is one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import attrs

PRE_KINDS = {"dev": 0, "alpha": 1, "beta": 2, "pre": 3, "preview": 3, "rc": 4}

TAG = re.compile(
    r"""
    (?P<prefix>[vV]?)
    (?P<numbers>[0-9]+(?:\.[0-9]+)*)
    (?:[-.+_]?(?P<pre>dev|alpha|beta|preview|pre|rc)[-.]?(?P<pre_n>[0-9]*))?
    (?P<suffix>[-_+].*)?
    """,
    re.VERBOSE,
)


@attrs.frozen(order=False)
class Tag:
    """A version tag, split; `key` orders tags of one family."""

    text: str
    prefix: str
    numbers: tuple[int, ...]
    pre: tuple[int, int] | None  # (kind rank, number); None for a release
    suffix: str

    @property
    def major(self) -> int:
        return self.numbers[0]

    @property
    def shape(self) -> int:
        return len(self.numbers)

    @property
    def family(self) -> tuple[str, int, str]:
        return (self.prefix.lower(), self.shape, self.suffix)

    @property
    def key(self) -> tuple[tuple[int, ...], int, tuple[int, int], int]:
        # a release sorts after its own pre-releases; among equal numbers, the longer tag wins
        # (29.0.1 over 29.0 when a major-only tag is compared with mixed shapes)
        return (
            self.numbers,
            1 if self.pre is None else 0,
            self.pre or (0, 0),
            self.shape,
        )


def parse_tag(text: str) -> Tag | None:
    """Split a tag, or None when it is not a version (`latest`, `bookworm`, `sha-…`)."""
    m = TAG.fullmatch(text)
    if m is None:
        return None
    numbers = tuple(int(n) for n in m["numbers"].split("."))
    pre = (PRE_KINDS[m["pre"]], int(m["pre_n"] or 0)) if m["pre"] else None
    return Tag(text, m["prefix"], numbers, pre, m["suffix"] or "")


@attrs.frozen
class Comparison:
    """What the registry offers next to a pinned tag.

    `newest_in_major` and `newest` are tag strings of the pinned tag's family (never older
    than the pinned tag; the pinned tag itself when nothing is newer), or None when the pinned
    tag is not a version. `note` says why a comparison could not be made, or how it was made.
    """

    pinned: str
    newest_in_major: str | None
    newest: str | None
    behind_in_major: bool
    behind: bool
    moving: bool = False
    note: str | None = None


def _newest(tags: Iterable[Tag]) -> Tag | None:
    return max(tags, key=lambda t: t.key, default=None)


def compare(pinned: str, available: Iterable[str]) -> Comparison:
    """Compare a pinned tag with the tags a registry lists."""
    me = parse_tag(pinned)
    if me is None:
        return Comparison(pinned, None, None, False, False, note=f"{pinned!r} is not a version tag")
    parsed = [t for t in (parse_tag(a) for a in available) if t is not None]
    if me.pre is None:
        parsed = [t for t in parsed if t.pre is None]
    same_variant = [
        t for t in parsed if (t.prefix.lower(), t.suffix) == (me.prefix.lower(), me.suffix)
    ]
    longer = [t for t in same_variant if t.shape > 1]
    if me.shape == 1 and longer:
        # a moving major tag: what it stands for is the newest release of its major
        in_major = _newest(t for t in longer if t.major == me.major)
        overall = _newest(longer)
        assert overall is not None
        behind = overall.major > me.major
        return Comparison(
            pinned,
            in_major.text if in_major else None,
            overall.text,
            False,
            behind,
            moving=True,
            note="moving tag: follows the newest release of its major",
        )
    family = [t for t in same_variant if t.family == me.family]
    candidates = [me, *family]
    in_major = _newest(t for t in candidates if t.major == me.major)
    overall = _newest(candidates)
    assert in_major is not None and overall is not None
    return Comparison(
        pinned,
        in_major.text,
        overall.text,
        in_major.key > me.key,
        overall.key > me.key,
    )


def newest_release(available: Iterable[str]) -> str | None:
    """The newest plain release tag (no prefix, no variant): a hint for digest-only pins."""
    plain = [
        t
        for t in (parse_tag(a) for a in available)
        if t is not None and t.pre is None and not t.suffix and not t.prefix
    ]
    best = _newest(plain)
    return best.text if best else None
