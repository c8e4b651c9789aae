"""`bundle switch --test` and `--boot` on a real server, proven with real reboots: a tested
generation runs until the reboot, which brings back the one that ran before; a generation
switched with --boot changes nothing running, and the reboot brings it up."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.harness import Target
from tests.safety.conftest import SAFE_STACK, current, history, safe_project
from tests.server.conftest import DeployProject


@pytest.fixture(scope="module")
def p(target: Target, registry: Any, tmp_path_factory: pytest.TempPathFactory) -> DeployProject:
    project = safe_project(tmp_path_factory.mktemp("goals"), target, SAFE_STACK)
    project.ok("switch", "web1")
    return project


def page_after_boot(p: DeployProject) -> str:
    """The page once web.service runs again after a reboot (a hang guard, not a timing)."""
    p.target.ssh(
        "for i in $(seq 600); do systemctl is-active -q web.service && exit 0; sleep 0.2; done; "
        "exit 1"
    )
    return p.fetch(8080, tries=300)


def test_a_tested_generation_runs_until_a_reboot_brings_back_the_last_good_one(
    p: DeployProject,
) -> None:
    first = current(p.target)
    p.edit("web1.toml", 'message = "first"', 'message = "second"')
    result = p.ok("switch", "web1", "--test")
    tested = current(p.target)
    assert tested == first + 1
    assert f"  --test: a reboot brings back generation {first}" in result.stdout.splitlines()
    assert p.fetch(8080) == "second from web1\n"
    status = p.ok("status", "web1").stdout
    assert f"  next boot: generation {first} (not what runs now: --test or --boot)" in status
    assert p.json("status", "web1")["boot"] == first

    t0 = time.monotonic()
    p.target.reboot()
    assert page_after_boot(p) == "first from web1\n"
    assert time.monotonic() - t0 < 600  # a hang guard
    assert current(p.target) == first
    assert "boot" not in p.json("status", "web1")
    last = history(p.target)[-1]
    assert (last["action"], last["from"], last["to"], last["result"]) == (
        "boot",
        tested,
        first,
        "ok",
    )
    # the repair journal is gone and the next switch is an ordinary one
    assert p.target.ssh("test -e /var/lib/bundle/pending.json", check=False).returncode == 1


def test_a_boot_switch_changes_nothing_now_and_the_reboot_brings_it_up(p: DeployProject) -> None:
    running = current(p.target)
    before = p.target.ssh("podman inspect web --format '{{.Id}}'").stdout
    result = p.ok("switch", "web1", "--boot")  # the stack still says "second"
    lines = result.stdout.splitlines()
    assert lines[0].startswith("web1: switch ") and lines[0].endswith(": ok"), result.stdout
    booted = p.json("status", "web1")["boot"]
    assert booted != running and current(p.target) == running
    assert any(f"the next boot brings up generation {booted}" in ln for ln in lines), lines
    assert p.target.ssh("podman inspect web --format '{{.Id}}'").stdout == before
    assert p.fetch(8080) == "first from web1\n"

    p.target.reboot()
    assert page_after_boot(p) == "second from web1\n"
    assert current(p.target) == booted
    assert "boot" not in p.json("status", "web1")

    # a normal switch after both: what runs is what boots
    p.edit("web1.toml", 'message = "second"', 'message = "third"')
    report = p.json("switch", "web1")
    assert report["result"] == "ok" and "boot" not in report
    assert "boot" not in p.json("status", "web1")
