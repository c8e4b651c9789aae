"""A server that loses power in the middle of a switch comes back on one whole generation by
itself: bundle-recover.service (activate/boot.py) repairs it at boot, before any unit of a
generation starts, with no bundle command run.

Each point cuts the power while the switcher waits at a step of its journal, lets the server
boot, waits until the boot settled, then reads the server over plain SSH (no switcher): no
journal left, `current` names one generation, the unit files in /etc, the running containers
and the page served are all that generation's, and history records the repair. Then `bundle
status` must agree and the next `bundle switch` must work.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.faults.harness import BOOT_UNIT, STATE, Lab
from tests.faults.managers import (
    Manager,
    power_cut_mid_switch_is_repaired_at_boot,
    sh,
    the_unit_is_installed_before_the_units,
)
from tests.harness import Target
from tests.server.conftest import make_deploy_project


@pytest.fixture(scope="module")
def lab(target: Target, registry: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    p = make_deploy_project(tmp_path_factory.mktemp("boot"), target)
    lab = Lab(p)
    lab.next_stack("the first generation")
    p.ok("switch", "web1")
    lab.running = lab.check(lab.status(), (1,))
    yield lab


SYSTEM = Manager()


def unit_show(lab: Lab, *props: str) -> dict[str, str]:
    return SYSTEM.show(lab, BOOT_UNIT, *props)


def test_the_unit_is_installed_enabled_and_not_drift(lab: Lab) -> None:
    the_unit_is_installed_before_the_units(lab, SYSTEM)


def test_a_boot_with_nothing_pending_runs_nothing(lab: Lab) -> None:
    lab.target.power_cut()
    assert lab.booted() in ("running", "degraded")
    shown = unit_show(lab, "ConditionResult", "ExecMainStartTimestampMonotonic", "ActiveState")
    # skipped by its condition: no process ran, so nothing was started or stopped by it
    assert shown == {
        "ConditionResult": "no",
        "ExecMainStartTimestampMonotonic": "0",
        "ActiveState": "inactive",
    }, shown
    assert lab.check(lab.status(), (lab.running,)) == lab.running


POINTS = [
    ("install-wrote-file", "old", "one new unit file written, the others still old"),
    ("switch-starting", "old", "the new units loaded and the first one restarted"),
    ("switch-running", "old", "every new unit started, not yet confirmed"),
    ("switch-done", "new", "every change made, the history line not yet written"),
]


@pytest.mark.parametrize(("point", "ends_on", "why"), POINTS, ids=[p[0] for p in POINTS])
def test_power_cut_mid_switch_is_repaired_at_boot(
    lab: Lab, point: str, ends_on: str, why: str
) -> None:
    power_cut_mid_switch_is_repaired_at_boot(lab, SYSTEM, point, ends_on, why)


def test_a_damaged_journal_does_not_hold_up_the_boot(lab: Lab) -> None:
    """An unreadable journal is dropped; one naming a generation that is not there fails the
    unit (with the reason in its journal) and the boot goes on with what is installed."""
    running = lab.running
    lab.target.write_file(f"{STATE}/pending.json", "{not json")
    lab.target.power_cut()
    assert lab.booted() == "running"
    assert sh(lab, f"test -e {STATE}/pending.json && echo left") == ""
    assert "unreadable" in sh(lab, f"journalctl -b -u {BOOT_UNIT} -o cat --no-pager")

    bogus = {"action": "activate", "from": running, "to": 999, "step": "flipped", "since": "x"}
    lab.target.write_file(f"{STATE}/pending.json", json.dumps(bogus))
    lab.target.power_cut()
    assert lab.booted() == "degraded"
    assert unit_show(lab, "Result")["Result"] == "exit-code"
    said = sh(lab, f"journalctl -b -u {BOOT_UNIT} -o cat --no-pager")
    assert "generation 999 is not on this server" in said, said
    assert lab.p.fetch(8080) == lab.page(running)  # the installed generation came up anyway
    lab.target.ssh(f"rm {STATE}/pending.json && systemctl reset-failed {BOOT_UNIT}")
    assert lab.check(lab.status(), (running,)) == running
