"""Moving a command's stdin and output in chunks on threads, shared by both transports.

stdin, stdout and stderr each get their own thread: a command that writes a lot to stderr
while we are still feeding its stdin must never wait on us (the classic pipe deadlock).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from builder.deploy.transport.base import Stdin, TransportError

CHUNK = 256 * 1024

T = TypeVar("T")


def stdin_chunks(stdin: Stdin) -> Iterator[bytes]:
    """stdin as chunks of at most CHUNK bytes; a file is read lazily, never whole."""
    if stdin is None:
        return
    if isinstance(stdin, bytes | bytearray | memoryview):
        view = memoryview(stdin)
        for start in range(0, len(view), CHUNK):
            yield bytes(view[start : start + CHUNK])
        return
    while chunk := stdin.read(CHUNK):
        yield chunk


def feed(stdin: Stdin, write: Callable[[bytes], object], finish: Callable[[], object]) -> int:
    """Write stdin through `write`, then `finish` (EOF); return the bytes written.

    Stops quietly when the other side stops reading (the command exited early): how the
    command ended is its exit code's story, not ours. A failing read of stdin is an error.
    """
    sent = 0
    chunks = stdin_chunks(stdin)
    try:
        while True:
            try:
                chunk = next(chunks)
            except StopIteration:
                break
            except OSError as e:
                raise TransportError(f"reading the data to send failed: {e}") from e
            try:
                write(chunk)
            except OSError:
                break
            sent += len(chunk)
    finally:  # even when reading stdin fails, the command must see EOF and end
        with contextlib.suppress(OSError):
            finish()
    return sent


def seconds_left(deadline: float | None) -> float | None:
    """Seconds until a time.monotonic() deadline (0.0 once it passed; None: no deadline)."""
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def drain(read: Callable[[int], bytes]) -> bytes:
    """Read until EOF (an empty read) and return everything."""
    parts = []
    while chunk := read(CHUNK):
        parts.append(chunk)
    return b"".join(parts)


class Worker(Generic[T]):
    """A daemon thread running fn(); result() returns its value or raises its exception."""

    def __init__(self, name: str, fn: Callable[[], T]) -> None:
        self._fn = fn
        self._returned: tuple[T] | None = None  # a tuple: fn() may itself return None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        try:
            self._returned = (self._fn(),)
        except BaseException as e:  # handed to the caller in result()
            self._error = e

    def error(self) -> BaseException | None:
        """What fn() raised, once it has ended; None while it runs or when it returned."""
        return None if self._thread.is_alive() else self._error

    def wait(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def result(self) -> T:
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._returned is not None  # the thread ended without raising
        return self._returned[0]


def send_all(data: bytes, send_some: Callable[[memoryview], int | None]) -> int:
    """Write `data` through `send_some`, which sends a prefix of at most CHUNK bytes and says
    how many went (None: nothing could go yet, try again; 0: the reader is gone, stop).
    Return the bytes sent. Waiting and deadlines are the channel's, inside send_some."""
    view = memoryview(data)
    sent = 0
    while view:
        n = send_some(view[:CHUNK])
        if n is None:
            continue
        if n == 0:
            break
        sent += n
        view = view[n:]
    return sent


def receive_exactly(size: int, receive_some: Callable[[int], bytes | None]) -> bytes:
    """`size` bytes through `receive_some` (at most n bytes; None: nothing yet, try again;
    b"": the end), or fewer when the stream ends first."""
    parts: list[bytes] = []
    got = 0
    while got < size:
        chunk = receive_some(min(size - got, CHUNK))
        if chunk is None:
            continue
        if not chunk:
            break
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)
