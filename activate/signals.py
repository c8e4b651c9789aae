"""Signals during a switch: the way forward turns them into a rollback, the way back ignores them."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

from .errors import Failed

HANDLED = (signal.SIGHUP, signal.SIGTERM, signal.SIGINT)


class Interrupted(Failed):
    pass


@contextmanager
def become_errors() -> Iterator[None]:
    """A dropped SSH session must not kill a half-done switch; SIGTERM/SIGINT roll back."""

    def interrupt(signum: int, _frame: object) -> None:
        raise Interrupted(f"interrupted by {signal.Signals(signum).name}")

    saved = {s: signal.getsignal(s) for s in HANDLED}
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)
    try:
        yield
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)


@contextmanager
def ignored() -> Iterator[None]:
    """The way back must finish: a second Ctrl-C would leave the server between two states."""
    saved = {s: signal.getsignal(s) for s in HANDLED}
    for s in saved:
        signal.signal(s, signal.SIG_IGN)
    try:
        yield
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)
