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


def sh(lab: Lab, command: str) -> str:
    return lab.target.ssh(command, check=False).stdout.strip()


def unit_show(lab: Lab, *props: str) -> dict[str, str]:
    out = sh(lab, f"systemctl show {BOOT_UNIT} " + " ".join(f"-p {p}" for p in props))
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def containers(lab: Lab, number: int) -> set[str]:
    """The containers generation `number` runs (the builder names each after its key)."""
    manifest = json.loads((lab.local(number) / "manifest.json").read_text())
    return {
        key.removesuffix(".container")
        for key, unit in manifest["units"].items()
        if key.endswith(".container") and unit["enable"]
    }


def test_the_unit_is_installed_enabled_and_not_drift(lab: Lab) -> None:
    assert sh(lab, f"systemctl is-enabled {BOOT_UNIT}") == "enabled"
    unit = lab.target.read_file(f"/etc/systemd/system/{BOOT_UNIT}")
    assert f"ConditionPathExists={STATE}/pending.json" in unit
    assert "Before=basic.target" in unit and "DefaultDependencies=no" in unit
    assert sh(lab, f"test -f {STATE}/boot/activate/boot.py && echo yes") == "yes"
    assert lab.status()["drift"] == []


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


def monotonic(lab: Lab, unit: str, prop: str) -> int:
    return int(sh(lab, f"systemctl show {unit} -p {prop} --value") or 0)


def ran_before_units(lab: Lab, want: int, other: int) -> None:
    """Nothing of `want` started before the repair ended, and the units only `other` has
    never started in this boot: the server never ran a mixture."""
    repaired = monotonic(lab, BOOT_UNIT, "ExecMainExitTimestampMonotonic")
    began = monotonic(lab, BOOT_UNIT, "ExecMainStartTimestampMonotonic")
    assert 0 < began < repaired
    print(f"{BOOT_UNIT} took {(repaired - began) / 1e6:.2f} s")
    assert repaired - began < 15e6, "the repair held up the boot"  # µs; the unit allows 60 s
    mine = {f"{name}.service" for name in containers(lab, want)}
    for service in mine:
        started = monotonic(lab, service, "InactiveExitTimestampMonotonic")
        assert started > repaired, (service, started, repaired)
    for service in {f"{name}.service" for name in containers(lab, other)} - mine:
        said = sh(lab, f"journalctl -b -u {service} -o cat --no-pager")
        assert "Started" not in said and "Starting" not in said, (service, said)


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
    old = lab.running
    lab.next_stack(f"power cut at {point}: {why}")
    lab.power_cut_at(point)
    new = lab.latest()
    want = old if ends_on == "old" else new
    folder = lab.local(want).name

    # the server, read with plain commands: no switcher ran since the boot but the unit
    assert sh(lab, f"test -e {STATE}/pending.json && echo left") == ""
    assert sh(lab, f"readlink {STATE}/current") == f"generations/{folder}"
    etc = sh(lab, "cd /etc/containers/systemd && sha256sum * | sort -k2")
    mine = sh(lab, f"cd {STATE}/current/units/quadlet && sha256sum * | sort -k2")
    assert etc == mine, "the unit files in /etc are not those of the generation"
    assert set(sh(lab, "podman ps --format '{{.Names}}'").split()) == containers(lab, want)
    assert lab.p.fetch(8080) == lab.page(want)
    entry = lab.history()[-1]
    assert (entry["from"], entry["to"]) == (old, new), entry
    assert BOOT_UNIT in entry["message"], entry
    assert entry["result"] == ("ok" if ends_on == "new" else "rolled back"), entry
    shown = unit_show(lab, "ConditionResult", "Result", "ExecMainStatus")
    assert shown == {"ConditionResult": "yes", "Result": "success", "ExecMainStatus": "0"}
    said = sh(lab, f"journalctl -b -u {BOOT_UNIT} -o cat --no-pager")
    assert ("finished" if ends_on == "new" else "undone") in said, said
    ran_before_units(lab, want, other=new if want == old else old)

    # then the deployer agrees, and goes on
    status = lab.status()
    assert status["recovered"] is None and status["interrupted"] is None, status
    lab.running = lab.check(status, (want,))
    lab.p.ok("switch", "web1")
    lab.running = lab.check(lab.status(), (lab.latest(),))


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
