"""STATE/lock: one switcher changes the server at a time.

flock(2) is released by the kernel when the holder dies, so a killed deploy never leaves a
stale lock behind; the file's text only says who holds it, for the error message.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from . import strict_json
from .errors import Failed
from .store import invoking_user, now_utc


def _describe_holder(text: str, path: Path) -> str:
    try:
        info = strict_json.loads(text, str(path), "", limit=4096)
        return (
            f"{info.get('user', '?')} (pid {info.get('pid', '?')} on {info.get('host', '?')}, "
            f"running {info.get('command', '?')}) since {info.get('since', '?')}"
        )
    except strict_json.JsonRefused:
        return f"another process ({text.strip() or f'{path} gives no details'})"


class Busy(Failed):
    """Another process holds the lock."""


RETRY = 2.0  # seconds between two tries of a caller that waits


def _take(fd: int, path: Path, wait: float, waiting: Callable[[], None] | None) -> None:
    """flock, tried again for `wait` seconds (telling `waiting` once); then Busy."""
    deadline = time.monotonic() + wait
    told = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                text = os.pread(fd, 4096, 0).decode("utf-8", "replace")
                still = f"still held after {wait:.0f} s" if wait else "held"
                raise Busy(
                    f"{path} is {still} by {_describe_holder(text, path)}; wait for it to "
                    "finish (the lock goes away by itself when that process ends)"
                ) from None
            if waiting is not None and not told:
                waiting()
                told = True
            time.sleep(RETRY)


@contextmanager
def held(
    path: Path, command: str, wait: float = 0, waiting: Callable[[], None] | None = None
) -> Iterator[None]:
    """Hold the lock for the block, or raise Failed naming the current holder: at once, or
    after `wait` seconds (the backup program waits for a deploy to end)."""
    # O_TRUNC would wipe the holder's text before we know whether we got the lock.
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        _take(fd, path, wait, waiting)
        info = {
            "user": invoking_user(),
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": command,
            "since": now_utc(),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info, sort_keys=True) + "\n").encode("utf-8"), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
