"""Running the tools a backup needs (systemctl, podman, mount, restic, kopia) and saying what
happens, one line at a time, in the journal."""

from __future__ import annotations

import contextlib
import subprocess

from ..errors import Failed

COMMAND_TIMEOUT = None  # backups of big volumes take what they take; the unit has a timeout


class Interrupted(BaseException):
    """SIGTERM or SIGINT (the unit was stopped or timed out): clean up, start containers."""


def say(line: str) -> None:
    """A line for the journal; a reader that went away must not stop a restore halfway."""
    with contextlib.suppress(OSError, ValueError):
        print(line, flush=True)


def run(
    argv: list[str],
    env: dict[str, str] | None = None,
    *,
    what: str,
    capture: bool = True,
    check: bool = True,
    cwd: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run argv; a failure becomes Failed naming `what` and the command's last error line."""
    try:
        done = subprocess.run(
            argv,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if capture else None,
            stderr=subprocess.PIPE,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
    except FileNotFoundError:
        raise Failed(f"{what}: {argv[0]} is not installed on this server") from None
    if check and done.returncode != 0:
        raise Failed(f"{what} failed: {last_line(done.stderr, done.returncode)}")
    return done


def last_line(text: str | None, rc: int) -> str:
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    return lines[-1] if lines else f"exit code {rc} and no message"
