"""A rootless host that loses power in the middle of a switch comes back on one whole
generation by itself: the user's own bundle-recover.service (activate/boot.py, in
~/.config/systemd/user) repairs it when the user's manager starts at boot (lingering), before
any of the user's generation units starts, with no bundle command run.

The server is prepared as tests/server/test_rootless.py does (a user, lingering, its key).
Each point cuts the power while the switcher (running as the user) waits at a step of its
journal, lets the server boot, waits until the user's manager settled, then reads the server
over plain SSH: no journal left, `current` names one generation, the user's quadlet files, the
containers the user runs and the page served are all that generation's, and history records
the repair. Then `bundle status` must agree and the next `bundle switch` must work.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.faults.harness import BOOT_UNIT, SAFETY, STACK, VARIANTS, Lab
from tests.harness import Target
from tests.server.test_rootless import USER, prepare_user, rootless_project

HOME = f"/home/{USER}"
STATE = f"{HOME}/.local/state/bundle"
QUADLET = f"{HOME}/.config/containers/systemd"
USER_UNITS = f"{HOME}/.config/systemd/user"
ROOTLESS = f'address = "web1-test"\nssh_user = "{USER}"\nrootless = true'


class RootlessLab(Lab):
    """The crash lab's stack, reached as the rootless user."""

    def next_stack(self, tag: str, *, big: bool = False, broken: bool = False) -> str:
        self.version += 1
        self.variant = "extra" if self.variant == "other" else "other"
        message = f"{self.version}: {tag}"
        text = STACK.format(
            safety=SAFETY,
            message=message,
            variant=self.variant,
            port=VARIANTS[self.variant],
            blob="",
            broken="",
        ).replace('address = "web1-test"', ROOTLESS)
        (self.p.stacks / "web1.toml").write_text(text)
        return message


@pytest.fixture(scope="module")
def lab(target: Target, registry: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    prepare_user(target)
    p = rootless_project(tmp_path_factory.mktemp("boot-rootless"), target)
    lab = RootlessLab(p)
    lab.next_stack("the first generation")
    p.ok("switch", "web1")
    lab.running = 1
    yield lab


def sh(lab: Lab, command: str) -> str:
    return lab.target.ssh(command, check=False).stdout.strip()


def uid(lab: Lab) -> str:
    return sh(lab, f"id -u {USER}")


def user_sh(lab: Lab, command: str) -> subprocess.CompletedProcess[str]:
    """`command` as the user, with what its systemctl --user needs, over root's SSH."""
    env = f"XDG_RUNTIME_DIR=/run/user/{uid(lab)}"
    quoted = f"cd {HOME} && {command}".replace("'", "'\\''")
    return lab.target.ssh(f"runuser -u {USER} -- env {env} sh -c '{quoted}'", check=False)


def as_user(lab: Lab, command: str) -> str:
    return user_sh(lab, command).stdout.strip()


def user_show(lab: Lab, unit: str, *props: str) -> dict[str, str]:
    out = as_user(lab, f"systemctl --user show {unit} " + " ".join(f"-p {p}" for p in props))
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def containers(lab: Lab, number: int) -> set[str]:
    manifest = json.loads((lab.local(number) / "manifest.json").read_text())
    return {
        key.removesuffix(".container")
        for key, unit in manifest["units"].items()
        if key.endswith(".container") and unit["enable"]
    }


def history(lab: Lab) -> list[dict[str, Any]]:
    text = sh(lab, f"cat {STATE}/history.jsonl")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def stopped_switcher(lab: Lab, timeout: float = 60) -> int:
    """The pid of the user's switcher that stopped itself at its fault point."""
    script = (
        f'pid=$(python3 -c \'import json; print(json.load(open("{STATE}/lock"))["pid"])\' '
        "2>/dev/null) && [ \"$(awk '{print $3}' /proc/$pid/stat 2>/dev/null)\" = T ] && echo $pid"
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = sh(lab, script)
        if out.isdigit():
            return int(out)
        time.sleep(0.1)
    raise AssertionError("the switcher did not stop at its fault point")


def user_manager_settled(lab: Lab, timeout: float = 60) -> str:
    """After a boot: the system settled, then the user's manager (started by lingering)."""
    lab.target.ssh("systemctl is-system-running --wait", check=False)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        said = as_user(lab, "systemctl --user is-system-running --wait")
        if said in ("running", "degraded"):
            return said
        time.sleep(0.2)  # its manager is not up yet: nothing to ask
    raise AssertionError(f"the user manager of {USER} did not settle: {said!r}")


def power_cut_at(lab: Lab, point: str) -> None:
    lab.fault(f"{point}:stop")  # /run/bundle-test-fault: the user's switcher reads it too
    client = lab.start("switch", "web1")
    pid = stopped_switcher(lab)
    assert sh(lab, f"ps -o user= -p {pid}") == USER
    lab.target.power_cut()
    client.send_signal(signal.SIGINT)
    try:
        client.wait(timeout=10)
    except subprocess.TimeoutExpired:
        client.kill()
    client.communicate()
    assert user_manager_settled(lab) == "running"


def test_the_unit_is_the_users_enabled_and_orders_before_its_units(lab: Lab) -> None:
    unit = sh(lab, f"cat {USER_UNITS}/{BOOT_UNIT}")
    assert f"ConditionPathExists={STATE}/pending.json" in unit
    assert "Before=basic.target" in unit and "DefaultDependencies=no" in unit
    assert "WantedBy=default.target" in unit
    assert sh(lab, f"test -e /etc/systemd/system/{BOOT_UNIT} || echo none") == "none"
    assert as_user(lab, f"systemctl --user is-enabled {BOOT_UNIT}") == "enabled"
    # the user manager orders its quadlet services after its basic.target, as the system does
    for service in sorted(f"{name}.service" for name in containers(lab, lab.running)):
        after = user_show(lab, service, "After")["After"].split()
        assert "basic.target" in after, (service, after)
    assert sh(lab, f"test -f {STATE}/boot/activate/boot.py && echo yes") == "yes"
    assert lab.p.json("status", "web1")["drift"] == []


def ran_before_units(lab: Lab, want: int, other: int) -> None:
    shown = user_show(
        lab, BOOT_UNIT, "ExecMainStartTimestampMonotonic", "ExecMainExitTimestampMonotonic"
    )
    began = int(shown["ExecMainStartTimestampMonotonic"])
    repaired = int(shown["ExecMainExitTimestampMonotonic"])
    assert 0 < began < repaired
    print(f"the user's {BOOT_UNIT} took {(repaired - began) / 1e6:.2f} s")
    assert repaired - began < 15e6, "the repair held up the user's manager"
    mine = {f"{name}.service" for name in containers(lab, want)}
    for service in mine:
        started = int(
            user_show(lab, service, "InactiveExitTimestampMonotonic")[
                "InactiveExitTimestampMonotonic"
            ]
        )
        assert started > repaired, (service, started, repaired)
    for service in {f"{name}.service" for name in containers(lab, other)} - mine:
        said = sh(lab, f"journalctl -b --user-unit {service} -o cat --no-pager")
        assert "Started" not in said and "Starting" not in said, (service, said)


POINTS = [
    ("switch-starting", "old", "the new units loaded and the first one restarted"),
    ("switch-done", "new", "every change made, the history line not yet written"),
]


@pytest.mark.parametrize(("point", "ends_on", "why"), POINTS, ids=[p[0] for p in POINTS])
def test_power_cut_mid_switch_is_repaired_by_the_users_manager_at_boot(
    lab: Lab, point: str, ends_on: str, why: str
) -> None:
    old = lab.running
    lab.next_stack(f"power cut at {point}: {why}")
    power_cut_at(lab, point)
    new = lab.latest()
    want = old if ends_on == "old" else new
    folder = lab.local(want).name

    # the server, read with plain commands: no switcher ran since the boot but the unit
    assert sh(lab, f"test -e {STATE}/pending.json && echo left") == ""
    assert sh(lab, f"readlink {STATE}/current") == f"generations/{folder}"
    units = sh(lab, f"cd {QUADLET} && sha256sum * | sort -k2")
    mine = sh(lab, f"cd {STATE}/current/units/quadlet && sha256sum * | sort -k2")
    assert units == mine, f"the unit files in {QUADLET} are not those of the generation"
    ps = user_sh(lab, "podman ps --format {{.Names}}")
    assert set(ps.stdout.split()) == containers(lab, want), (ps.stderr, ps.returncode)
    assert lab.p.fetch(8080) == lab.page(want)
    entry = history(lab)[-1]
    assert (entry["from"], entry["to"]) == (old, new), entry
    assert BOOT_UNIT in entry["message"], entry
    assert entry["result"] == ("ok" if ends_on == "new" else "rolled back"), entry
    shown = user_show(lab, BOOT_UNIT, "ConditionResult", "Result", "ExecMainStatus")
    assert shown == {"ConditionResult": "yes", "Result": "success", "ExecMainStatus": "0"}
    said = as_user(lab, f"journalctl --user -b -u {BOOT_UNIT} -o cat --no-pager")  # its own log
    assert ("finished" if ends_on == "new" else "undone") in said, said
    ran_before_units(lab, want, other=new if want == old else old)

    # then the deployer agrees, and goes on
    status = lab.p.json("status", "web1")
    assert status["recovered"] is None and status["interrupted"] is None, status
    assert status["current"] == want and status["drift"] == [], status
    lab.no_fault()
    lab.p.ok("switch", "web1")
    lab.running = lab.latest()
    assert lab.p.json("status", "web1")["current"] == lab.running
    assert lab.p.fetch(8080) == lab.page(lab.running)
