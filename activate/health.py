"""The health gate: after a switch, wait until the generation works, or say why it does not.

A generation works when
 * every unit it means to run (`enable: true`) is active, and none of them is restarting:
   systemd's NRestarts for it does not grow during the settle window, and
 * every check its units declare passes (manifest `units.KEY.checks`, from the stack's
   `checks = [...]`): `http` (the URL answers with `status`, and its body contains `body`),
   `tcp` (HOST:PORT accepts a connection) or `command` (`sh -c COMMAND` exits 0).

`gate()` evaluates everything until all of it passes, then waits until `settle` seconds have
passed since the last unit became active, and evaluates again; both rounds must pass with no
unit restarted in between. It gives up when
`timeout` seconds have passed, with the results of the last round. Checks run on the server
with the standard library only (urllib, socket, subprocess), one after the other.
"""

from __future__ import annotations

import functools
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import urllib.request

from . import crashes
from .manifest import Check, Manifest
from .report import one_line
from .systemd import Services
from .unit_state import UnitState
from .words import plural

OUTPUT_LIMIT = 400  # characters of a check's output kept for the report
BODY_LIMIT = 64 * 1024
POLL_SECONDS = 0.5


@dataclass(frozen=True)
class Result:
    """One check's outcome in one round."""

    unit: str
    kind: str  # "unit", "http", "tcp" or "command"
    check: str
    ok: bool
    output: str
    final: bool = False  # the unit can no longer become healthy: the gate stops (crashes.py)

    def as_json(self) -> dict[str, Any]:
        found = asdict(self)
        del found["final"]
        return found

    def line(self) -> str:
        return f"{self.unit}: {self.check}: {self.output}"


@dataclass(frozen=True)
class Health:
    """What the gate found: passed or not, after how long, and the last round's results."""

    passed: bool
    seconds: float
    timeout: float
    settle: float
    results: tuple[Result, ...]
    skipped: str | None = None

    @property
    def failures(self) -> tuple[Result, ...]:
        return tuple(r for r in self.results if not r.ok)

    def summary(self) -> str:
        """One line naming the failed checks and what they said; a crashing unit first."""
        failed = self.failures
        gone = [r for r in failed if r.final]
        if gone:
            others = len(failed) - 1
            more = f"; and {plural(others, 'more failed check')}" if others else ""
            return f"{gone[0].output}{more}"
        shown = "; ".join(r.line() for r in failed[:3])
        more = f"; and {len(failed) - 3} more" if len(failed) > 3 else ""
        return f"{plural(len(failed), 'health check')} failed after {self.seconds:.0f} s: {shown}{more}"

    def as_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "seconds": round(self.seconds, 2),
            "timeout": self.timeout,
            "settle": self.settle,
            "checks": [r.as_json() for r in self.results],
            **({"skipped": self.skipped} if self.skipped else {}),
        }


def skipped(reason: str) -> Health:
    return Health(True, 0.0, 0.0, 0.0, (), reason)


# ---- one check --------------------------------------------------------------------------


@functools.cache
def _opener() -> urllib.request.OpenerDirector:
    """No proxy, no redirects; made on first use (urllib and its TLS context cost ~20 ms of
    every switcher start, and most switches run no HTTP check)."""
    # start-up: urllib only when an HTTP check runs
    import urllib.request

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        """A check is about this service's own answer: a redirect is the answer."""

        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    return urllib.request.build_opener(urllib.request.ProxyHandler({}), NoRedirect())


def _clip(text: str) -> str:
    text = one_line(text)
    return text if len(text) <= OUTPUT_LIMIT else text[: OUTPUT_LIMIT - 3] + "..."


def run_http(check: Check) -> tuple[bool, str]:
    # start-up: urllib and http.client only when an HTTP check runs
    import http.client
    import urllib.error
    import urllib.request

    request = urllib.request.Request(check.target, headers={"User-Agent": "bundle-switcher"})
    try:
        with _opener().open(request, timeout=check.timeout) as response:
            status, raw = response.status, response.read(BODY_LIMIT)
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read(BODY_LIMIT) if exc.fp else b""
    except urllib.error.URLError as exc:
        reason = exc.reason
        text = getattr(reason, "strerror", None) or str(reason)
        return False, _clip(f"no answer: {text}")
    except (OSError, http.client.HTTPException) as exc:
        return False, _clip(f"no answer: {getattr(exc, 'strerror', None) or exc!r}")
    body = raw.decode("utf-8", "replace")
    if status != check.status:
        return False, _clip(f"answered {status}, expected {check.status}: {body}")
    if check.body is not None and check.body not in body:
        return False, _clip(f"answered {status} without {check.body!r} in the body: {body}")
    return True, f"answered {status}"


def _split_host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def run_tcp(check: Check) -> tuple[bool, str]:
    try:
        host, port = _split_host_port(check.target)
        with socket.create_connection((host, port), timeout=check.timeout):
            return True, "connected"
    except ValueError:
        return False, f"{check.target!r} is not HOST:PORT"
    except TimeoutError:
        return False, f"no answer within {check.timeout} s"
    except OSError as exc:
        return False, _clip(f"cannot connect: {exc.strerror or exc}")


def run_command(check: Check) -> tuple[bool, str]:
    try:
        done = subprocess.run(
            ["sh", "-c", check.target],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=check.timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return False, f"did not finish within {check.timeout} s"
    except OSError as exc:
        return False, _clip(f"cannot run sh: {exc.strerror or exc}")
    output = (done.stdout + done.stderr).strip()
    if done.returncode != 0:
        return False, _clip(f"exit {done.returncode}: {output or 'no output'}")
    return True, _clip(output or "exit 0")


RUNNERS: dict[str, Callable[[Check], tuple[bool, str]]] = {
    "http": run_http,
    "tcp": run_tcp,
    "command": run_command,
}


# ---- a round: units and checks ----------------------------------------------------------


def _unit_results(
    manifest: Manifest,
    states: dict[str, UnitState],
    since_switch: dict[str, int],
    window: dict[str, int] | None,
    crashed: Callable[[str, UnitState], str],
) -> list[Result]:
    """One result per unit that should run and does not; one line when they all do.

    `since_switch` and `window` are NRestarts per service at the switch and at the start of
    the settle window; a restart inside the window (`window` given) fails the unit. A unit
    systemd gave up on gets `crashed`'s account of it, as a final result.
    """
    bad: list[Result] = []
    running = 0
    for unit in sorted(manifest.units.values(), key=lambda u: u.key):
        if not unit.enable:
            continue  # e.g. a timer's service: it runs when the timer fires
        st = states.get(unit.service)
        now = st.restarts if st is not None and st.restarts is not None else None
        total = now - since_switch.get(unit.service, now) if now is not None else 0
        loops = f", restarted {plural(total, 'time')} since the switch" if total > 0 else ""
        journal = f"see `journalctl -u {unit.service}`"
        if st is not None and crashes.gave_up(st):
            output = crashed(unit.service, st)
            bad.append(Result(unit.key, "unit", f"{unit.service} is active", False, output, True))
        elif st is None or st.active != "active":
            state = f"{st.active}/{st.sub}" if st else "unknown"
            output = f"{state}{loops}; {journal}"
            bad.append(Result(unit.key, "unit", f"{unit.service} is active", False, output))
        elif window is not None and now is not None and now > window.get(unit.service, now):
            output = f"restarted by systemd while settling{loops} (a restart loop); {journal}"
            bad.append(Result(unit.key, "unit", f"{unit.service} stays up", False, output))
        else:
            running += 1
    if bad:
        return bad
    return [Result("*", "unit", "every unit is active", True, f"{plural(running, 'unit')} active")]


def _check_results(manifest: Manifest) -> list[Result]:
    results = []
    for unit in sorted(manifest.units.values(), key=lambda u: u.key):
        for check in unit.checks:
            ok, output = RUNNERS[check.kind](check)
            results.append(Result(unit.key, check.kind, check.describe(), ok, output))
    return results


def _restarts(states: dict[str, UnitState]) -> dict[str, int]:
    return {s: st.restarts for s, st in states.items() if st.restarts is not None}


def settle_left(states: dict[str, UnitState], settle: float, now: float) -> float:
    """Seconds of the settle window still to wait: it runs from the moment the last unit
    became active (systemd's StateChangeTimestampMonotonic, on the clock `now` reads), not
    from the end of the checks, so the time the checks took counts towards it."""
    changes = [st.changed_us for st in states.values() if st.active == "active" and st.changed_us]
    if not changes:
        return settle
    return min(settle, max(0.0, max(changes) / 1e6 + settle - now))


def gate(
    services: Services,
    manifest: Manifest,
    timeout: float,
    settle: float,
    baseline: dict[str, int] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    redact: Callable[[str], str] = str,
    first: dict[str, UnitState] | None = None,
) -> Health:
    """Wait up to `timeout` s for every unit to run and every check to pass, then for the
    settle window.

    `baseline` is each service's NRestarts before the switch started it; restarts counted
    from there are reported, but only a restart inside the settle window fails a round.
    A unit that systemd gave up on (crashes.py) ends the wait at once. `redact` hides secret
    values in what the units printed. `first`: the units' states read just before (the
    first round uses them instead of asking systemd again). `clock` must be CLOCK_MONOTONIC
    (or a stand-in that starts below systemd's timestamps), as systemd's timestamps are.
    """
    if not services.managed:
        return skipped("services not managed: nothing runs here to check")
    started = clock()
    deadline = started + timeout
    services_of = [u.service for u in manifest.units.values()]
    read = first if first is not None else services.states(services_of)
    since_switch = dict(baseline) if baseline is not None else _restarts(read)
    known: dict[str, UnitState] | None = read

    def crashed(service: str, st: UnitState) -> str:
        return redact(crashes.told(services, service, st))

    def round_(window: dict[str, int] | None) -> tuple[list[Result], dict[str, UnitState]]:
        nonlocal known
        states = known if known is not None else services.states(services_of)
        known = None  # every later round asks systemd
        units = _unit_results(manifest, states, since_switch, window, crashed)
        return [*units, *_check_results(manifest)], states

    while True:
        results, states = round_(None)
        if all(r.ok for r in results) and settle > 0:
            sleep(settle_left(states, settle, clock()))
            results, _ = round_(_restarts(states))
        if all(r.ok for r in results):
            return Health(True, clock() - started, timeout, settle, tuple(results))
        if clock() >= deadline or any(r.final for r in results):
            return Health(False, clock() - started, timeout, settle, tuple(results))
        sleep(min(POLL_SECONDS, max(0.0, deadline - clock())))
