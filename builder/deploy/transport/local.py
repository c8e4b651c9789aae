"""Commands on this machine: for `--target DIR` (a folder standing in for a server's root)
and for deploying to the machine you are on."""

from __future__ import annotations

import contextlib
import os
import select
import shlex
import signal
import subprocess

from builder.deploy.transport.base import (
    ClosingMixin,
    CommandResult,
    DeadlineExceeded,
    Stdin,
    TransportError,
)
from builder.deploy.transport.streams import (
    Worker,
    drain,
    feed,
    receive_exactly,
    seconds_left,
    send_all,
)


class LocalTransport(ClosingMixin):
    """Runs argv directly (no shell) with subprocess; nothing to open or close."""

    def __init__(self, label: str = "this machine") -> None:
        self.label = label

    def describe(self) -> str:
        return self.label

    def check_command(self) -> str | None:
        return None

    def run(
        self,
        argv: list[str],
        stdin: Stdin = None,
        cwd: str | None = None,
        timeout: float | None = None,
    ) -> CommandResult:
        shown = shlex.join(argv)
        proc = self._start(argv, cwd, shown)
        assert proc.stdin and proc.stdout and proc.stderr
        pin, pout, perr = proc.stdin, proc.stdout, proc.stderr
        writer = Worker("stdin", lambda: feed(stdin, pin.write, pin.close))
        out = Worker("stdout", lambda: drain(pout.read))
        err = Worker("stderr", lambda: drain(perr.read))
        try:
            rc = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            raise DeadlineExceeded(
                f"`{shown}` on {self.label} did not finish within {timeout:g} s and was killed",
                timeout or 0.0,
            ) from None
        finally:
            if proc.returncode is None:  # interrupted (Ctrl-C): leave nothing running
                _kill_group(proc)
            sent = writer.result()
            stdout, stderr = out.result(), err.result()
            pout.close()
            perr.close()
        return CommandResult(rc=rc, stdout=stdout, stderr=stderr, bytes_sent=sent)

    def open(
        self, argv: list[str], cwd: str | None = None, timeout: float | None = None
    ) -> LocalChannel:
        shown = shlex.join(argv)
        return LocalChannel(self._start(argv, cwd, shown), shown, self.label)

    def _start(self, argv: list[str], cwd: str | None, shown: str) -> subprocess.Popen[bytes]:
        try:
            return subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=cwd,
                start_new_session=True,  # so a timeout can kill the command's children too
            )
        except OSError as e:
            where = f" in {cwd}" if cwd else ""
            raise TransportError(
                f"cannot run `{shown}`{where} on {self.label}: {e.strerror or e}; "
                "check that the program is installed and the folder exists"
            ) from e

    def close(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"<LocalTransport {self.label}>"


class LocalChannel:
    """A local command's pipes, written and read with select() so that no step outlives its
    deadline; stderr is drained on a thread (a chatty command must never block)."""

    def __init__(self, proc: subprocess.Popen[bytes], shown: str, label: str) -> None:
        assert proc.stdin and proc.stdout and proc.stderr
        self._proc, self._shown, self._label = proc, shown, label
        self._in: int | None = proc.stdin.fileno()
        self._out = proc.stdout.fileno()
        os.set_blocking(self._in, False)
        perr = proc.stderr
        self._err = Worker("stderr", lambda: drain(perr.read))
        self.bytes_sent = 0

    def _late(self, deadline: float | None) -> DeadlineExceeded:
        self.close()
        return DeadlineExceeded(
            f"`{self._shown}` on {self._label} did not answer in time and was killed", 0.0
        )

    def write(self, data: bytes, deadline: float | None) -> None:
        def send_some(chunk: memoryview) -> int | None:
            if self._in is None:
                return 0
            left = seconds_left(deadline)
            if left == 0.0 or not select.select([], [self._in], [], left)[1]:
                raise self._late(deadline)
            try:
                return os.write(self._in, chunk)
            except BlockingIOError:
                return None
            except OSError:  # it exited and stopped reading: finish() tells how it ended
                self._close_stdin()
                return 0

        self.bytes_sent += send_all(data, send_some)

    def read_exactly(self, size: int, deadline: float | None) -> bytes:
        def receive_some(n: int) -> bytes:
            left = seconds_left(deadline)
            if left == 0.0 or not select.select([self._out], [], [], left)[0]:
                raise self._late(deadline)
            return os.read(self._out, n)

        return receive_exactly(size, receive_some)

    def finish(self, deadline: float | None) -> CommandResult:
        self._close_stdin()
        rest = drain(lambda n: self.read_exactly(n, deadline))
        try:
            rc = self._proc.wait(seconds_left(deadline))
        except subprocess.TimeoutExpired:
            raise self._late(deadline) from None
        stderr = self._err.result()
        self.close()
        return CommandResult(rc=rc, stdout=rest, stderr=stderr, bytes_sent=self.bytes_sent)

    def _close_stdin(self) -> None:
        if self._in is not None and self._proc.stdin is not None:
            with contextlib.suppress(OSError):
                self._proc.stdin.close()
        self._in = None

    def close(self) -> None:
        self._close_stdin()
        if self._proc.returncode is None and self._proc.poll() is None:
            _kill_group(self._proc)
        assert self._proc.stdout and self._proc.stderr
        self._proc.stdout.close()


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
