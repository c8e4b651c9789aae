"""STATE/lock: one switcher changes the server at a time.

flock(2) is released by the kernel when the holder dies, so a killed deploy never leaves a
stale lock behind; the file's text only says who holds it, for the error message.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from collections.abc import Iterator
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


@contextmanager
def held(path: Path, command: str) -> Iterator[None]:
    """Hold the lock for the block, or raise Failed at once naming the current holder."""
    # O_TRUNC would wipe the holder's text before we know whether we got the lock.
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 4096, 0).decode("utf-8", "replace")
            raise Busy(
                f"{path} is held by {_describe_holder(text, path)}; wait for it to finish "
                "(the lock goes away by itself when that process ends)"
            ) from None
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
