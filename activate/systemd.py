"""Every call to systemctl, podman and podman's quadlet generator goes through here.

`Systemd` runs the real commands (ROOT is '/'); `FilesOnly` stands in when ROOT is a folder
standing in for a server and services are not managed. The rest of the switcher only sees the
`Services` interface, so a fake systemctl/podman on PATH is enough to test the real path.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

from . import MIN_PYTHON
from .errors import Failed
from .manifest import Manifest
from .scope import CURRENT as SCOPE
from .server_checks import (
    check_run_as,
    check_unprivileged_ports,
    parse_version,
    required_podman,
)
from .starting import recorded, settle, transient
from .unit_state import UnitState
from .words import plural

QUADLET_CANDIDATES = ("/usr/libexec/podman/quadlet", "/usr/lib/podman/quadlet")
SYSTEMD_UP_STATES = frozenset({"running", "degraded", "starting", "initializing", "maintenance"})
BROKEN_LOAD_STATES = frozenset({"not-found", "bad-setting", "error"})

TIMEOUT_QUICK = 120
JOURNAL_SCAN = 200  # journal entries read to find a crashing unit's own last lines
TIMEOUT_START = 900  # systemd's own start timeout applies first; this only catches a hang
TIMEOUT_PULL = 3600
PULLS_AT_ONCE = 4  # registries throttle clients that open many pulls at once


class Services(Protocol):
    """What activation needs from the service manager."""

    managed: bool

    def check_server(self, manifest: Manifest) -> dict[str, str]: ...
    def check_quadlet(self, units: Mapping[str, bytes], services: Mapping[str, str]) -> None: ...
    def pull_missing(self, images: Sequence[str]) -> list[str]: ...
    def states(self, services: Sequence[str]) -> dict[str, UnitState]: ...
    def stop(self, service: str) -> None: ...
    def start(self, service: str) -> None: ...
    def restart(self, service: str) -> None: ...
    def stop_all(self, services: Sequence[str]) -> None: ...
    def start_all(self, verb: str, services: Sequence[str]) -> None: ...
    def reload_all(self, services: Sequence[str]) -> None: ...
    def enable(self, services: Sequence[str]) -> None: ...
    def disable(self, services: Sequence[str]) -> None: ...
    def daemon_reload(self) -> None: ...
    def remove_network(self, name: str) -> None: ...
    def reset_failed(self, services: Sequence[str]) -> None: ...
    def journal(self, service: str) -> list[dict[str, object]]: ...


def _int(text: str | None) -> int | None:
    return int(text) if text is not None and text.isascii() and text.isdigit() else None


def network_name(key: str, unit_text: str) -> str:
    """The podman network a quadlet .network unit creates: NetworkName= or systemd-NAME."""
    section = ""
    name = ""
    for raw in unit_text.splitlines():
        line = raw.strip()
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        elif section == "Network" and "=" in line and not line.startswith(("#", ";")):
            k, v = line.split("=", 1)
            if k.strip() == "NetworkName":
                name = v.strip()
    return name or f"systemd-{key.rsplit('.', 1)[0]}"


class StartFailed(Failed):
    """A start or restart of one batch failed; `units` are the ones it failed for."""

    def __init__(self, message: str, units: Sequence[str]) -> None:
        super().__init__(message)
        self.units = tuple(units)


def lines_about(text: str, service: str) -> str:
    """The lines of systemctl's output that name `service` (one call may name several)."""
    name = re.compile(rf"(?<![\w@.-]){re.escape(service)}(?![\w@-])")
    return "\n".join(ln for ln in text.splitlines() if name.search(ln))


def _start_failed(st: UnitState | None) -> bool:
    """After a failed batch: did this unit's own start fail (as opposed to another's)?"""
    if st is None:
        return True
    return (
        st.load in BROKEN_LOAD_STATES
        or st.active in ("failed", "deactivating")
        or st.sub in ("auto-restart", "auto-restart-queued")
        or (st.active == "inactive" and st.result not in (None, "success"))
    )


def last_line(text: str) -> str:
    """The line of a tool's output that says what went wrong (systemctl puts it first)."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    telling = [ln for ln in lines if "rror" in ln or "failed" in ln or "not found" in ln]
    return (telling or lines or ["no message"])[-1]


class Systemd:
    """The real thing: systemctl, podman and /usr/libexec/podman/quadlet."""

    managed = True

    def _run(
        self,
        argv: Sequence[str],
        timeout: int = TIMEOUT_QUICK,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                list(argv),
                capture_output=True,
                text=True,
                timeout=timeout,
                env=dict(env) if env is not None else None,
                stdin=subprocess.DEVNULL,
                check=False,
            )
        except FileNotFoundError:
            raise Failed(f"{argv[0]} is not installed on this server (not on PATH)") from None
        except subprocess.TimeoutExpired:
            raise Failed(f"`{' '.join(argv)}` did not finish within {timeout} s") from None

    def _must(self, argv: Sequence[str], what: str, hint: str, timeout: int = TIMEOUT_QUICK) -> str:
        done = self._run(argv, timeout)
        if done.returncode != 0:
            raise Failed(
                f"{what} failed (exit {done.returncode}: {last_line(done.stderr or done.stdout)}); {hint}"
            )
        return done.stdout

    def quadlet_binary(self) -> str:
        override = os.environ.get("BUNDLE_QUADLET")
        if override:
            return override
        for candidate in QUADLET_CANDIDATES:
            if os.access(candidate, os.X_OK):
                return candidate
        raise Failed(
            f"podman's quadlet generator is not at {' or '.join(QUADLET_CANDIDATES)}; "
            "install podman 4.4 or newer"
        )

    def check_server(self, manifest: Manifest) -> dict[str, str]:
        facts = {"python": ".".join(map(str, sys.version_info[:3]))}
        if sys.version_info < MIN_PYTHON:
            raise Failed(f"python {facts['python']} is too old; the switcher needs 3.11 or newer")
        if shutil.which("systemctl") is None:
            raise Failed("systemctl is not installed; this server needs systemd")
        check_run_as(manifest)
        if SCOPE.rootless and manifest.units:
            self._check_network_online()
        state = self._run(SCOPE.systemctl("is-system-running")).stdout.strip()
        if state not in SYSTEMD_UP_STATES:
            raise Failed(f"systemd is not running as the service manager (state {state!r})")
        facts["systemd"] = state
        need, why = required_podman(manifest)
        if need or manifest.all_images():
            if shutil.which("podman") is None:
                raise Failed(f"podman is not installed; {why or 'the generation runs containers'}")
            text = self._must(["podman", "--version"], "podman --version", "check podman")
            have = parse_version(text)
            facts["podman"] = ".".join(map(str, have))
            if need and have < need:
                raise Failed(
                    f"podman {facts['podman']} is too old: {why}; upgrade podman on the server"
                )
            facts["quadlet"] = self.quadlet_binary()
        return facts

    def _check_network_online(self) -> None:
        # podman's user units wait for the system's network-online.target (podman-user-wait-
        # network-online.service): never reached, every start hangs 90 s and then fails
        state = self._run(["systemctl", "is-active", "network-online.target"]).stdout.strip()
        if state != "active":
            raise Failed(
                f"network-online.target is {state or 'unknown'} on this server, and rootless "
                "podman units wait for it, then fail; as root, run `systemctl add-wants "
                "multi-user.target network-online.target && systemctl start network-online.target`"
            )

    def check_quadlet(self, units: Mapping[str, bytes], services: Mapping[str, str]) -> None:
        if not units:
            return
        with tempfile.TemporaryDirectory(prefix="bundle-quadlet-") as tmp:
            for name, data in units.items():
                Path(tmp, name).write_bytes(data)
            env = {**os.environ, "QUADLET_UNIT_DIRS": tmp}
            user = ["-user"] if SCOPE.rootless else []
            done = self._run([self.quadlet_binary(), *user, "-dryrun"], env=env)
        errors = [ln.strip() for ln in done.stderr.splitlines() if ln.strip()]
        if done.returncode != 0:
            raise Failed(
                f"podman's quadlet generator refuses the new units: {' | '.join(errors[-5:])}; "
                "fix the stack and build again"
            )
        if SCOPE.rootless:
            check_unprivileged_ports(units)
        missing = [
            f"{key} → {svc}" for key, svc in services.items() if f"---{svc}---" not in done.stdout
        ]
        if missing:
            raise Failed(
                f"podman's quadlet generator produced no unit for {', '.join(missing)}"
                f"{' (' + errors[-1] + ')' if errors else ''}; fix the stack and build again"
            )

    def pull_missing(self, images: Sequence[str]) -> list[str]:
        """Pull the images not on the server, a few at once; the first failure (in the
        manifest's order) is the error, naming its image."""
        if not images:
            return []
        with ThreadPoolExecutor(max_workers=min(PULLS_AT_ONCE, len(images))) as pool:
            outcomes = list(pool.map(self._pull_if_missing, images))
        errors = [o for o in outcomes if isinstance(o, Failed)]
        if errors:
            more = len(errors) - 1
            also = f" (and {plural(more, 'more image')} failed too)" if more else ""
            raise Failed(f"{errors[0].message}{also}")
        return [ref for ref, o in zip(images, outcomes, strict=True) if o is True]

    def _pull_if_missing(self, ref: str) -> bool | Failed:
        """True: pulled; False: already there; a Failed: the pull failed (raised by the caller)."""
        try:
            if self._run(["podman", "image", "exists", ref]).returncode == 0:
                return False
            self._must(
                ["podman", "pull", ref],
                f"pulling {ref}",
                "check the image name and the registry, or load it with `podman load`",
                timeout=TIMEOUT_PULL,
            )
        except Failed as exc:
            return exc
        return True

    def states(self, services: Sequence[str]) -> dict[str, UnitState]:
        if not services:
            return {}
        props = (
            "Id,LoadState,ActiveState,SubState,MainPID,NRestarts,Result,ExecMainCode,"
            "ExecMainStatus,ConditionTimestampMonotonic,StateChangeTimestampMonotonic,"
            "NeedDaemonReload"
        )
        out = self._must(
            SCOPE.systemctl("show", f"--property={props}", "--", *services),
            "systemctl show",
            "check that systemd is running",
        )
        blocks = [b for b in out.strip().split("\n\n") if b.strip()]
        found: dict[str, UnitState] = {}
        for service, block in zip(services, blocks, strict=False):
            values = dict(ln.split("=", 1) for ln in block.splitlines() if "=" in ln)
            found[service] = UnitState(
                load=values.get("LoadState"),
                active=values.get("ActiveState"),
                sub=values.get("SubState"),
                main_pid=_int(values.get("MainPID")) or None,
                restarts=_int(values.get("NRestarts")),
                result=values.get("Result") or None,
                exit_code=_int(values.get("ExecMainCode")),
                exit_status=_int(values.get("ExecMainStatus")),
                started_us=_int(values.get("ConditionTimestampMonotonic")) or None,
                changed_us=_int(values.get("StateChangeTimestampMonotonic")) or None,
                stale=values.get("NeedDaemonReload") == "yes",
            )
        return found

    def stop(self, service: str) -> None:
        done = self._run(SCOPE.systemctl("stop", "--", service), TIMEOUT_START)
        if done.returncode == 0:
            return
        known = self.states([service]).get(service)
        if known is None or known.load not in BROKEN_LOAD_STATES:  # an unknown unit is stopped
            raise Failed(
                f"stopping {service} failed ({last_line(done.stderr)}); "
                f"see `{SCOPE.journal(service)}`"
            )

    def start(self, service: str) -> None:
        self._start("start", service)

    def restart(self, service: str) -> None:
        self._start("restart", service)

    def _start(self, verb: str, service: str, tries: int = 0) -> None:
        """Settle, reset-failed, start; once more if that failed for a transient reason
        (activate/starting.py). `tries`: attempts already made (by a batch)."""
        argv = SCOPE.systemctl(verb, "--", service)
        while True:
            tries += 1
            settle(lambda: self._state(service))
            self.reset_failed([service])
            done = self._run(argv, TIMEOUT_START)
            if done.returncode == 0:
                return
            st = self._state(service)
            if tries > 1 or not transient(done.stderr, st):
                break
        raise StartFailed(_start_message(verb, service, done, st, tries), [service])

    def start_all(self, verb: str, services: Sequence[str]) -> None:
        """Start or restart units that do not depend on each other with one systemctl call;
        when it fails, the units it failed for are named (and a transient failure of one of
        them is tried again alone, as `_start` does)."""
        if len(services) <= 1:
            for service in services:
                self._start(verb, service)
            return
        settle(lambda: self._deactivating(services))
        self.reset_failed(services)
        done = self._run(SCOPE.systemctl(verb, "--", *services), TIMEOUT_START)
        if done.returncode == 0:
            return
        after = self._states_or_none(services)
        output = done.stderr or done.stdout
        named = [s for s in services if lines_about(output, s)]
        failed = [s for s in services if s in named or _start_failed(after.get(s))]
        if not failed:
            raise StartFailed(
                f"{verb}ing {', '.join(services)} failed (exit {done.returncode}: "
                f"{last_line(output)}); see `{SCOPE.journal(services[0])}` and the others'",
                services,
            )

        def said(s: str) -> str:  # systemctl's lines about this unit; all of them if it is alone
            return lines_about(output, s) or (output if len(failed) == 1 else "")

        hard = [s for s in failed if not transient(said(s), after.get(s))]
        if hard:
            raise StartFailed(
                "; ".join(_start_message(verb, s, done, after.get(s), 1, said(s)) for s in hard),
                hard,
            )
        for service in failed:  # canceled or start-limited: once more, alone
            self._start(verb, service, tries=1)

    def reload_all(self, services: Sequence[str]) -> None:
        """ExecReload= of each unit (a signal or a command in its container), one call."""
        if services:
            hint = f"see `{SCOPE.journal(services[0])}`"
            self._must(SCOPE.systemctl("reload", "--", *services), "reload", hint, TIMEOUT_START)

    def _deactivating(self, services: Sequence[str]) -> UnitState | None:
        """The state of one unit still stopping (settle waits while there is one), or None."""
        found = self._states_or_none(services)
        return next((st for st in found.values() if st.active == "deactivating"), None)

    def _states_or_none(self, services: Sequence[str]) -> dict[str, UnitState]:
        """Best effort: {} when systemd cannot say."""
        try:
            return self.states(services)
        except Failed:
            return {}

    def stop_all(self, services: Sequence[str]) -> None:
        """Stop units that do not depend on each other with one systemctl call."""
        if len(services) <= 1:
            for service in services:
                self.stop(service)
            return
        done = self._run(SCOPE.systemctl("stop", "--", *services), TIMEOUT_START)
        if done.returncode == 0:
            return
        known = self._states_or_none(services)
        output = done.stderr or done.stdout
        named = [s for s in services if lines_about(output, s)]

        def still_up(s: str) -> bool:
            st = known.get(s)
            return st is None or st.active not in ("inactive", "failed")

        blamed = named or [s for s in services if still_up(s)]
        failed = [
            s
            for s in blamed
            if known.get(s) is None or known[s].load not in BROKEN_LOAD_STATES  # unknown: stopped
        ]
        if failed:
            shown = "; ".join(
                f"stopping {s} failed ({last_line(lines_about(output, s) or output)}); "
                f"see `{SCOPE.journal(s)}`"
                for s in failed
            )
            raise Failed(shown)

    def _state(self, service: str) -> UnitState | None:
        """Best effort: None when systemd cannot say."""
        try:
            return self.states([service]).get(service)
        except Failed:
            return None

    def enable(self, services: Sequence[str]) -> None:
        if services:
            self._must(
                SCOPE.systemctl("enable", "--", *services),
                f"enabling {', '.join(services)}",
                "check their [Install] sections",
            )

    def disable(self, services: Sequence[str]) -> None:
        # A unit whose file is already gone cannot be disabled and needs no disabling.
        for service in services:
            self._run(SCOPE.systemctl("disable", "--", service))

    def daemon_reload(self) -> None:
        self._must(
            SCOPE.systemctl("daemon-reload"), "systemctl daemon-reload", "see `journalctl -b`"
        )

    def remove_network(self, name: str) -> None:
        if self._run(["podman", "network", "exists", name]).returncode != 0:
            return
        self._must(
            ["podman", "network", "rm", "--", name],
            f"removing podman network {name}",
            f"see which containers still use it: `podman network inspect {name}`",
        )

    def reset_failed(self, services: Sequence[str]) -> None:
        """Forget failures and start limits (best effort): they describe a unit as it ran
        before, not the files about to be started."""
        if services:
            self._run(SCOPE.systemctl("reset-failed", "--", *services))

    def journal(self, service: str) -> list[dict[str, object]]:
        """The unit's last journal entries, as JSON objects (best effort: [] if unreadable)."""
        user = ["--user"] if SCOPE.rootless else []
        argv = ["journalctl", *user, "-u", service, "-o", "json", "-n", str(JOURNAL_SCAN)]
        try:
            done = self._run([*argv, "--no-pager"])
        except Failed:
            return []
        entries = []
        for line in done.stdout.splitlines():
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if isinstance(entry, dict):
                    entries.append(entry)
        return entries


class FilesOnly:
    """ROOT is not '/': unit files are written, no service is touched."""

    managed = False

    def check_server(self, manifest: Manifest) -> dict[str, str]:
        return {"python": ".".join(map(str, sys.version_info[:3]))}

    def check_quadlet(self, units: Mapping[str, bytes], services: Mapping[str, str]) -> None:
        return None

    def pull_missing(self, images: Sequence[str]) -> list[str]:
        return []

    def states(self, services: Sequence[str]) -> dict[str, UnitState]:
        return {}

    def stop(self, service: str) -> None:
        return None

    def start(self, service: str) -> None:
        return None

    def restart(self, service: str) -> None:
        return None

    def stop_all(self, services: Sequence[str]) -> None:
        return None

    def start_all(self, verb: str, services: Sequence[str]) -> None:
        return None

    def reload_all(self, services: Sequence[str]) -> None:
        return None

    def enable(self, services: Sequence[str]) -> None:
        return None

    def disable(self, services: Sequence[str]) -> None:
        return None

    def daemon_reload(self) -> None:
        return None

    def remove_network(self, name: str) -> None:
        return None

    def reset_failed(self, services: Sequence[str]) -> None:
        return None

    def journal(self, service: str) -> list[dict[str, object]]:
        return []


def _start_message(
    verb: str,
    service: str,
    done: subprocess.CompletedProcess[str],
    st: UnitState | None,
    tries: int,
    said: str | None = None,
) -> str:
    again = ", twice" if tries > 1 else ""
    line = last_line(said if said is not None else (done.stderr or done.stdout))
    return (
        f"{verb}ing {service} failed{again} (exit {done.returncode}: {line}{recorded(st)}); "
        f"see `{SCOPE.journal(service)}`"
    )


def services_for(root: Path, choice: str) -> Services:
    """'auto' manages services only when ROOT is the real root."""
    if choice == "systemd" or (choice == "auto" and root.resolve() == Path("/")):
        return Systemd()
    return FilesOnly()
