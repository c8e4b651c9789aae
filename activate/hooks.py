"""Deploy hooks: the generation's `pre` and `post` scripts, run inside the switch lock.

`pre` hooks run after every check that needs no change (files, server, quadlet, drift, images
pulled, secrets in place) and before the switch's journal is written: a failing one stops the
switch with nothing changed. `post` hooks run once the new generation passed its health gate
and before the dead-man's confirmation: a failing one is a failed switch, undone like a failed
gate (activate/activation.py). Rollbacks and the repair of a switch cut short run none: going
back must not depend on a script that may be what broke.

Each hook is `/bin/sh SCRIPT` in the generation's folder, in its own process group (killed
whole at its timeout or when the switch is interrupted), with BUNDLE_FROM, BUNDLE_TO and
BUNDLE_STATE in its environment; its output (stdout and stderr) is redacted of the
generation's secrets before it goes into a report.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from .errors import Failed
from .manifest import Hook, Hooks
from .protocol import HookRun

OUTPUT_LINES = 40  # the last lines of a hook's output a report keeps


def run_phase(
    hooks: Hooks,
    phase: str,
    folder: Path,
    env: dict[str, str],
    redact: Callable[[str], str],
    done: list[HookRun],
) -> None:
    """Run the phase's hooks in order, each appended to `done`; Failed at the first failure."""
    listed = hooks.pre if phase == "pre" else hooks.post
    for number, hook in enumerate(listed, 1):
        result = run_one(hook, number, folder, env, hooks.timeout, redact)
        done.append(result)
        if result.exit_code != 0:
            raise Failed(failure(result))


def failure(r: HookRun) -> str:
    why = (
        f"did not finish within {r.timeout} s and was killed"
        if r.exit_code is None
        else f"exited with {r.exit_code}"
    )
    last = r.output.splitlines()[-1:] if r.output else []
    said = f" (last output: {last[0]})" if last else ""
    return f"{r.phase}-hook {r.number} `{r.command}` {why}{said}"


def run_one(
    hook: Hook,
    number: int,
    folder: Path,
    env: dict[str, str],
    timeout: int,
    redact: Callable[[str], str],
) -> HookRun:
    started = time.monotonic()
    proc = subprocess.Popen(
        ["/bin/sh", str(folder / hook.path)],
        cwd=folder,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, **env},
        start_new_session=True,  # its own group: a timeout kills what it started too
    )
    code: int | None
    try:
        out, _ = proc.communicate(timeout=timeout)
        code = proc.returncode
    except subprocess.TimeoutExpired:
        _kill(proc)
        out, _ = proc.communicate()
        code = None
    finally:
        if proc.returncode is None:  # interrupted (a signal became an error): none left behind
            _kill(proc)
            proc.wait()
    text = out.decode("utf-8", "replace")
    lines = [_printable(redact(line)) for line in text.splitlines()][-OUTPUT_LINES:]
    return HookRun(
        phase=hook.phase,
        number=number,
        command=_printable(redact(hook.command)),
        exit_code=code,
        seconds=round(time.monotonic() - started, 2),
        timeout=timeout,
        output="\n".join(lines),
    )


def _printable(line: str) -> str:
    # the output reaches a person's terminal: no escape sequence of a hook moves its cursor
    return "".join(c if c.isprintable() or c == "\t" else "?" for c in line)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
