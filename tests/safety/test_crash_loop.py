"""A container that crashes at once fails the switch in seconds, not after health_timeout.

quadlet's units restart a crashed container (Restart=always) until systemd's start limit
(5 starts in 10 s) makes it give up; from then on waiting cannot help, so the gate stops and
the server rolls back, with what the container printed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from activate.crashes import describe, gave_up, own_output
from activate.systemd import UnitState
from tests.harness import Target
from tests.safety.conftest import current, history
from tests.server.conftest import WEB_STACK, DeployProject, make_deploy_project

CRASHY = (
    "[containers.crashy]\n"
    'image = "registry.test:5000/bundle/web"\n'
    'version = "1.0.0"\n'
    'command = ["sh", "-c", "echo starting up; echo \'fatal: no database at db:5432\' >&2; exit 1"]\n\n'
)


@pytest.fixture(scope="module")
def p(target: Target, registry: Any, tmp_path_factory: pytest.TempPathFactory) -> DeployProject:
    project = make_deploy_project(tmp_path_factory.mktemp("crash"), target, WEB_STACK)
    project.ok("switch", "web1")  # health_timeout: the default, 60 s
    return project


@contextmanager
def added(p: DeployProject, container: str) -> Iterator[None]:
    """The stack with one more container, for one test."""
    p.edit("web1.toml", "[containers.other]", container + "[containers.other]")
    try:
        yield
    finally:
        p.edit("web1.toml", container + "[containers.other]", "[containers.other]")


def test_a_crash_looping_container_rolls_back_well_before_the_health_timeout(
    p: DeployProject,
) -> None:
    target = p.target
    before = current(target)
    with added(p, CRASHY):
        t0 = time.monotonic()
        result = p.run("switch", "web1")
        took = time.monotonic() - t0
    assert result.returncode == 1, result.stdout + result.stderr
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"error: web1: rolled back to generation {before}: "), first
    assert "crashy.service keeps crashing: exited " in first, first
    assert "(exit status 1), and systemd stopped restarting it" in first, first
    assert "fatal: no database at db:5432" in first, first  # the container's own words
    assert "Scheduled restart job" not in first  # systemd's notes are not its output
    assert took < 45, took  # 60 s of health_timeout were not waited out
    assert current(target) == before
    assert p.fetch(8080) == "first from web1\n"
    last = history(target)[-1]
    assert last["result"] == "rolled back" and "keeps crashing" in last["message"]


FAILS_ONCE = (
    "[containers.once]\n"
    'image = "registry.test:5000/bundle/web"\n'
    'version = "1.0.0"\n'
    'restart = "no"\n'
    'command = ["sh", "-c", "echo reading /etc/once.conf; echo \'fatal: bad config line 3\' >&2; exit 3"]\n\n'
)


def test_a_container_that_fails_at_its_first_start_is_told_with_its_last_lines(
    p: DeployProject,
) -> None:
    target = p.target
    before = current(target)
    with added(p, FAILS_ONCE):
        result = p.run("switch", "web1")
    assert result.returncode == 1, result.stdout + result.stderr
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"error: web1: rolled back to generation {before}: "), first
    assert "once.service stopped" in first, first
    assert "(exit status 3) and systemd does not restart it" in first, first
    assert "last log lines: reading /etc/once.conf | fatal: bad config line 3" in first, first
    assert "see `journalctl -u once.service`" in first, first
    assert "failed right after starting" not in first
    assert current(target) == before
    assert p.fetch(8080) == "first from web1\n"
    assert "fatal: bad config line 3" in history(target)[-1]["message"]


@pytest.mark.parametrize(
    ("active", "sub", "result", "verdict"),
    [
        ("active", "running", "success", False),
        ("activating", "auto-restart", "exit-code", False),
        ("activating", "auto-restart-queued", "exit-code", False),
        ("failed", "failed-before-auto-restart", "exit-code", False),
        ("failed", "failed", "exit-code", True),
        ("failed", "failed", "start-limit-hit", True),
        ("inactive", "dead", "signal", True),
        ("inactive", "dead", "success", False),
    ],
)
def test_when_systemd_has_given_up_on_a_unit(
    active: str, sub: str, result: str, verdict: bool
) -> None:
    assert gave_up(UnitState("loaded", active, sub, None, 0, result)) is verdict


def test_the_crash_is_told_like_a_person_would() -> None:
    st = UnitState("loaded", "failed", "failed", None, 4, "exit-code", 1, 3, 10_000_000, 16_200_000)
    entries: list[dict[str, object]] = [
        {
            "_PID": "1",
            "_COMM": "systemd",
            "MESSAGE": "web.service: Failed with result 'exit-code'.",
        },
        {"_COMM": "podman", "MESSAGE": "2026-12-06 container died 6f1c"},
        {"_COMM": "conmon", "CONTAINER_NAME": "systemd-web", "MESSAGE": "listening on :80\n"},
        {"_COMM": "conmon", "CONTAINER_NAME": "systemd-web", "MESSAGE": [98, 111, 111, 109]},
    ]
    assert own_output(entries) == ["listening on :80", "boom"]
    assert describe("web.service", st, entries, "journalctl -u web.service") == (
        "web.service keeps crashing: exited 5 times in 6 s (exit status 3), and systemd stopped "
        "restarting it; last log lines: listening on :80 | boom; see `journalctl -u web.service`"
    )
    once = UnitState("loaded", "failed", "failed", None, 0, "signal", 2, 9, 1_000_000, 1_400_000)
    assert describe("db.service", once, [], "journalctl -u db.service") == (
        "db.service stopped in 0.4 s (killed by SIGKILL) and systemd does not restart it; "
        "it printed nothing; see `journalctl -u db.service`"
    )
