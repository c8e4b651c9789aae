"""Commands on this machine: for `--target DIR` (a folder standing in for a server's root)
and for deploying to the machine you are on."""

from __future__ import annotations

import contextlib
import os
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
from builder.deploy.transport.streams import Worker, drain, feed


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
        try:
            proc = subprocess.Popen(
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

    def close(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"<LocalTransport {self.label}>"


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
