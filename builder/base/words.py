"""How counts and generation changes read in the messages a person sees (JSON keeps raw values)."""

from __future__ import annotations


def plural(n: int, noun: str, many: str | None = None) -> str:
    """`1 file`, `2 files`, `0 files`; `many` for a noun that does not just take an s."""
    if n == 1:
        return f"{n} {noun}"
    return f"{n} {many or noun + 's'}"


def change(old: int | None, new: int | None) -> str:
    """A generation change: `6 -> 7`, or `to 1 (first deploy)` when nothing was active."""
    if old is None and new is not None:
        return f"to {new} (first deploy)"
    return f"{'-' if old is None else old} -> {'-' if new is None else new}"
