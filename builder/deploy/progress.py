"""Progress of a push on a terminal: bytes, rate, time left, redrawn on one line.

Not on a terminal (a pipe, CI, --json), nothing is drawn: the summary line says what was sent.
"""

from __future__ import annotations

import io
import sys
import time
from typing import TextIO

from builder.base.words import plural

# set by the CLI for one host on a terminal; never for --json, --quiet or several hosts at once
ENABLED = False


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


class PushProgress(io.RawIOBase):
    """A readable stream over `data` that redraws a progress line as the transport reads it."""

    def __init__(self, data: bytes, label: str, files: int, out: TextIO | None = None) -> None:
        self._data = memoryview(data)
        self._pos = 0
        self.label = label
        self.files = files
        self.out = out or sys.stderr
        self.started = time.monotonic()
        self._last_draw = 0.0

    def readable(self) -> bool:
        return True

    @property
    def size(self) -> int:
        """The bytes it will give in all (for the push's deadline)."""
        return len(self._data)

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        n = min(len(buffer), len(self._data) - self._pos)
        buffer[:n] = self._data[self._pos : self._pos + n]
        self._pos += n
        now = time.monotonic()
        if n == 0 or now - self._last_draw > 0.1:
            self._last_draw = now
            self.draw(done=n == 0)
        return n

    def line(self) -> str:
        total = len(self._data)
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = self._pos / elapsed
        left = (total - self._pos) / rate if rate > 0 else 0.0
        pct = 100 * self._pos / total if total else 100
        return (
            f"{self.label}: {_size(self._pos)} / {_size(total)} ({pct:3.0f}%), {plural(self.files, 'file')}, "
            f"{_size(rate)}/s, {int(left // 60)}:{int(left % 60):02d} left"
        )

    def draw(self, done: bool = False) -> None:
        self.out.write("\r\x1b[K" + self.line() + ("\n" if done else ""))
        self.out.flush()
