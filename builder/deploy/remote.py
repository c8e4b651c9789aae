"""The deployer's side of the switcher protocol (docs/architecture.md): one Server per host.

A call runs `python3 -m activate COMMAND --state STATE --root ROOT` on the server, in a folder
holding the switcher, and reads JSON back; during a push or a switch whose switcher can be
served in one session (builder/deploy/session.py), the calls go as requests to one remote
Python instead, with the same replies. The switcher of the bundle being pushed is installed
first under STATE/switchers/<switcher hash>/ (once; later pushes find it there) by the
builder's own scripts (builder/deploy/bootstrap.py), so no push depends on a switcher the
server already has. Its check also lists the server's generation folders, which lets a push
name one of them as the base of its manifest.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import posixpath
import tarfile
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import attrs

from activate import strict_json
from activate.protocol import switcher_argv
from builder.base.errors import BundleError
from builder.base.words import plural
from builder.deploy.bootstrap import BOOTSTRAP
from builder.deploy.deadlines import SWITCHING, Deadlines, doing, stdin_size
from builder.deploy.replies import Misfit, structure, structure_list
from builder.deploy.session import Session, launcher_argv
from builder.deploy.transport.base import (
    CommandResult,
    ConnectionLost,
    DeadlineExceeded,
    Stdin,
    Transport,
)

R = TypeVar("R")

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def switcher_damage(expected: dict[str, str], found: dict[str, str | None]) -> str | None:
    """What is wrong with an installed switcher, in words; None when it is whole."""
    problems = [
        f"{path} is missing"
        if path not in found
        else f"{path} is empty"
        if found[path] == EMPTY_SHA256
        else f"{path} is unreadable"
        if found[path] is None
        else f"{path} differs"
        for path in sorted(expected)
        if found.get(path, "") != expected[path]
    ]
    problems += [f"{path} does not belong to it" for path in sorted(found.keys() - expected.keys())]
    if not problems:
        return None
    more = f" and {len(problems) - 3} more" if len(problems) > 3 else ""
    return ", ".join(problems[:3]) + more


@attrs.frozen
class Found:
    """What the bootstrap check found: whether the switcher was sent now (and, if it was there
    but damaged, what was wrong with it), the generations."""

    switcher_sent: bool
    generations: frozenset[str]
    repaired: str | None = None


class RemoteError(BundleError):
    """The server refused or failed an operation (exit 1)."""

    exit_code = 1

    def __init__(self, message: str, report: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.report = report


@attrs.define
class Server:
    host: str
    transport: Transport
    state: str
    root: str
    reopen: Callable[[float], Server] | None = None  # a new connection (connect timeout)
    bytes_sent: int = 0
    stacks_dir: Any = None  # where secrets files are read when a push delivers secrets
    deadlines: Deadlines = attrs.field(
        factory=Deadlines
    )  # how long each step may take ([host] command_timeout)
    repaired: list[str] = attrs.field(factory=list)  # what ensure_switcher fixed on this server
    channels: int = 0  # remote commands started on this connection (each its own channel)
    session: Session | None = None  # the one remote Python of this deploy, while it is open

    @property
    def where(self) -> str:
        return self.transport.describe()

    def switcher_dir(self, switcher_hash: str) -> str:
        return posixpath.join(self.state, "switchers", switcher_hash)

    def _run(
        self,
        argv: list[str],
        stdin: Stdin = None,
        cwd: str | None = None,
        timeout: float | None = None,
        step: str | None = None,
        after: str = "",
    ) -> CommandResult:
        """Run argv within its deadline (by default: a look-up, or a transfer of its stdin);
        `step` names it in messages (default: from argv), `after` says what goes on there if
        it is cut off."""
        if timeout is None:
            timeout = self.deadlines.for_stdin(stdin_size(stdin))
        step = step or _step(argv)
        with self._guard(step, timeout, after):
            self.channels += 1
            result = self.transport.run(argv, stdin=stdin, cwd=cwd, timeout=timeout)
        return self._counted(result, argv[0] == "python3")

    def _counted(self, result: CommandResult, python: bool) -> CommandResult:
        self.bytes_sent += result.bytes_sent
        if result.rc == 127 and python:
            raise RemoteError(
                f"{self.host}: the server has no python3 ({self.where}); install it: the switcher needs it"
            )
        return result

    @contextlib.contextmanager
    def _guard(self, step: str, timeout: float | None, after: str = "") -> Iterator[None]:
        """A step cut off by its deadline or a lost connection: one line naming the host, the
        step and what to do; an open session cannot go on after that, so it is closed."""
        try:
            yield
        except DeadlineExceeded:
            self.drop_session()
            raise self._no_answer(step, timeout or 0.0, after) from None
        except ConnectionLost as exc:
            self.drop_session()
            raise ConnectionLost(
                f"{self.host}: lost the connection to {self.where} while {doing(step)} ({step}): "
                f"{exc.reason}; {self._advice(step, 'lost')}{after}",
                exc.reason,
            ) from None

    def drop_session(self) -> None:
        """Close the session without waiting for its Python (it is killed where it can be)."""
        if self.session is not None:
            self.session.channel.close()
            self.session = None

    def _request(
        self, header: dict[str, Any], payload: Stdin, step: str, timeout: float | None = None
    ) -> CommandResult:
        """One request to the session, within the deadline the step has as its own command."""
        assert self.session is not None
        if timeout is None:
            timeout = self.deadlines.for_stdin(stdin_size(payload))
        with self._guard(step, timeout):
            result = self.session.request(header, payload, time.monotonic() + timeout)
        if self.session.ended is not None:  # its Python is gone: later steps start their own
            self.session = None
        return self._counted(result, True)

    def open_session(self, switcher_hash: str, files: dict[str, bytes]) -> Found:
        """Start the deploy's one remote Python (LAUNCHER) and check (and install) the
        switcher through it; its later calls in that switcher's folder go there too."""
        dest = self.switcher_dir(switcher_hash)
        if self.session is not None and self.session.switcher != dest:
            self.end_session()
        if self.session is None:
            timeout = self.deadlines.lookup()
            with self._guard("check", timeout):
                self.channels += 1
                channel = self.transport.open(launcher_argv(self.state), timeout=timeout)
            self.session = Session(channel, dest, {dest})
        return self.ensure_switcher(switcher_hash, files)

    def end_session(self) -> None:
        """Let the session's remote Python end; nothing waits on it any more."""
        if self.session is not None:
            session, self.session = self.session, None
            session.end(time.monotonic() + self.deadlines.lookup())

    def serve(self, folder: str) -> None:
        """Calls in `folder` (a generation of the session's switcher) go to the session."""
        if self.session is not None:
            self.session.serves.add(folder)

    def _no_answer(self, step: str, seconds: float, after: str = "") -> DeadlineExceeded:
        return DeadlineExceeded(
            f"{self.host}: no answer from the server for {seconds:.0f} s while {doing(step)} "
            f"({step}); {self._advice(step, 'late')}{after}",
            seconds,
        )

    def shell(self, script: str, step: str, after: str = "") -> CommandResult:
        """A shell script as a look-up (its deadline: command_timeout), named `step`."""
        return self._run(["sh", "-c", script], step=step, after=after)

    def _advice(self, step: str, how: str) -> str:
        """What to do next, in the error's one line."""
        probe = self.transport.check_command()
        up = f"check that the host is up ({probe})" if probe else "check what hangs there"
        if step in SWITCHING:
            return (
                "the switch goes on there without this deploy and ends on the old or the new "
                "generation (with the dead-man on, unconfirmed, on the old one, by itself); "
                f"run `bundle status {self.host}` once it answers to see which"
            )
        if how == "lost":
            return f"{up} and the network, then run again"
        return f"{up} or raise [host] command_timeout"

    def ensure_switcher(self, switcher_hash: str, files: dict[str, bytes]) -> Found:
        """Install this bundle's switcher on the server unless a whole copy is there.

        The check hashes the installed files on the server, so a copy that a power cut left
        empty, a hand edit or a missing file is reinstalled (and said so in `repaired`)."""
        dest = self.switcher_dir(switcher_hash)
        if self.session is not None and self.session.switcher == dest:
            check = self._request({"op": "check", "dest": dest}, None, "check")
        else:
            check = self._run(["python3", "-c", BOOTSTRAP, "check", dest, self.state])
        if check.rc != 0:
            raise RemoteError(f"{self.host}: cannot look for the switcher: {check.stderr_line()}")
        try:
            seen = strict_json.loads(check.stdout, "check", "")
            installed = seen["switcher"]
            left = [str(name) for name in seen.get("leftovers", [])]
            names = frozenset(map(str, seen["generations"]))
            if installed is not None and not isinstance(installed, dict):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            raise RemoteError(
                f"{self.host}: the switcher check printed {check.stdout[:80]!r}, not its JSON; "
                "is python3 on the server a Python 3.11 or newer?"
            ) from None
        expected = {path: hashlib.sha256(data).hexdigest() for path, data in files.items()}
        damage = switcher_damage(expected, installed) if installed is not None else None
        leftover = (
            f"removed {plural(len(left), 'temp folder')} of an install cut short ({', '.join(left)})"
            if left
            else None
        )
        if installed is not None and damage is None:
            self.repaired += [leftover] if leftover else []
            return Found(switcher_sent=False, generations=names, repaired=leftover)
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w:gz", format=tarfile.GNU_FORMAT) as tar:
            for path in sorted(files):
                info = tarfile.TarInfo(path)
                info.size = len(files[path])
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(files[path]))
        if self.session is not None and self.session.switcher == dest:
            result = self._request({"op": "install", "dest": dest}, raw.getvalue(), "install")
        else:
            argv = ["python3", "-c", BOOTSTRAP, "install", dest, self.state]
            result = self._run(argv, stdin=raw.getvalue())
        if result.rc != 0:
            raise RemoteError(f"{self.host}: cannot install the switcher: {result.stderr_line()}")
        repaired = (
            f"the switcher in {dest} was damaged ({damage}); reinstalled it" if damage else None
        )
        notes = "; ".join(n for n in (repaired, leftover) if n) or None
        self.repaired += [notes] if notes else []
        return Found(switcher_sent=True, generations=names, repaired=notes)

    def _call(
        self,
        command: str,
        args: tuple[str, ...],
        cwd: str,
        stdin: Stdin,
        allow_report_on_failure: bool,
        timeout: float | None,
    ) -> Any:
        """Run a switcher command within `timeout` (default: see _run); its JSON, or
        RemoteError with the switcher's one line (and its report, if asked for)."""
        argv = switcher_argv(command, self.state, self.root, args)
        if self.session is not None and cwd in self.session.serves:
            call = {
                "op": "call",
                "dest": self.session.switcher,
                "argv": argv[argv.index("-m") + 2 :],
            }
            result = self._request(call, stdin, command, timeout)
        else:
            result = self._run(argv, stdin=stdin, cwd=cwd, timeout=timeout)
        report = None
        if result.stdout.strip():
            try:
                report = strict_json.loads(result.stdout, command, "", expect=None)
            except strict_json.JsonRefused:
                report = None
        if result.rc != 0:
            line = result.stderr_line().removeprefix("activate: ")
            if not result.stderr.strip() and (result.rc < 0 or result.rc > 128):
                # killed by a signal (kill -9, the OOM killer): it had no time to say anything
                line = (
                    f"the switcher's `{command}` was killed on the server before it finished "
                    f"(exit code {result.rc}); run `bundle status {self.host}`: it finishes or "
                    "undoes a switch that was cut short"
                )
            failed = report if allow_report_on_failure and isinstance(report, dict) else None
            raise RemoteError(f"{self.host}: {line}", failed)
        if report is None:
            raise RemoteError(
                f"{self.host}: the switcher's `{command}` printed no report; run it by hand with --debug"
            )
        return report

    def call(
        self,
        command: str,
        *args: str,
        reply: type[R],
        cwd: str,
        stdin: Stdin = None,
        allow_report_on_failure: bool = False,
        timeout: float | None = None,
    ) -> R:
        """A switcher command's reply, as `reply` (activate/protocol.py)."""
        raw = self._call(command, args, cwd, stdin, allow_report_on_failure, timeout)
        try:
            return structure(raw, reply)
        except Misfit as exc:
            raise self._misfit(command, exc) from None

    def call_rows(self, command: str, *args: str, row: type[R], cwd: str) -> list[R]:
        """A switcher command that answers with a JSON list of `row`."""
        raw = self._call(command, args, cwd, None, False, None)
        try:
            return structure_list(raw, row)
        except Misfit as exc:
            raise self._misfit(command, exc) from None

    def _misfit(self, command: str, exc: Misfit) -> RemoteError:
        return RemoteError(
            f"{self.host}: the switcher's `{command}` printed a report that does not fit "
            f"({exc}); run it by hand with --debug on the server and report it"
        )

    def generation_dir(self, name: str) -> str:
        return posixpath.join(self.state, "generations", name)


def _step(argv: list[str]) -> str:
    """The step a command is, for messages: the switcher's command or the bootstrap's."""
    if argv[:1] == ["python3"] and "-m" in argv:
        at = argv.index("-m")
        if argv[at + 1 : at + 2] == ["activate"] and len(argv) > at + 2:
            return argv[at + 2]
    if argv[:2] == ["python3", "-c"] and len(argv) > 3:
        return argv[3]
    return argv[0] if argv else "?"
