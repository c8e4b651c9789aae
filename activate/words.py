"""How counts read in the switcher's messages (it cannot import builder/base/words.py)."""

from __future__ import annotations


def plural(n: int, noun: str, many: str | None = None) -> str:
    """`1 file`, `2 files`, `0 files`; `many` for a noun (or noun and verb) that does not just
    take an s: plural(n, "file differs", "files differ")."""
    if n == 1:
        return f"{n} {noun}"
    return f"{n} {many or noun + 's'}"
