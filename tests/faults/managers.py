"""The repair at boot seen from the manager a host's generations run under: the system's
systemd (a root host) or its user's own (a rootless host, started at boot by lingering).

The tests of bundle-recover.service (test_boot_recover.py, test_boot_recover_rootless.py) run
one body on either; a `Manager` says where things are and how to ask about them there.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time

import attrs

from tests.faults.harness import BOOT_UNIT, Lab


def sh(lab: Lab, command: str) -> str:
    return lab.target.ssh(command, check=False).stdout.strip()


def containers(lab: Lab, number: int) -> set[str]:
    """The containers generation `number` runs (the builder names each after its key)."""
    manifest = json.loads((lab.local(number) / "manifest.json").read_text())
    return {
        key.removesuffix(".container")
        for key, unit in manifest["units"].items()
        if key.endswith(".container") and unit["enable"]
    }


@attrs.frozen
class Manager:
    """The system's manager; `UserManager` is a user's."""

    state: str = "/var/lib/bundle"
    quadlet: str = "/etc/containers/systemd"
    units: str = "/etc/systemd/system"

    def run(self, lab: Lab, command: str) -> subprocess.CompletedProcess[str]:
        """`command` as the owner of the generations."""
        return lab.target.ssh(command, check=False)

    def ask(self, lab: Lab, command: str) -> str:
        return self.run(lab, command).stdout.strip()

    def show(self, lab: Lab, unit: str, *props: str) -> dict[str, str]:
        out = self.ask(lab, f"{self.systemctl} show {unit} " + " ".join(f"-p {p}" for p in props))
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    @property
    def systemctl(self) -> str:
        return "systemctl"

    def boot_log(self) -> str:
        """The journal of bundle-recover.service in this boot, as its owner reads it."""
        return f"journalctl -b -u {BOOT_UNIT} -o cat --no-pager"

    def service_log(self, service: str) -> str:
        """The journal of a generation's `service` in this boot, read by root."""
        return f"journalctl -b -u {service} -o cat --no-pager"

    def power_cut_at(self, lab: Lab, point: str) -> None:
        lab.power_cut_at(point)

    def agrees(self, lab: Lab, status: dict, want: int) -> None:
        """`bundle status` and the server say generation `want` runs, whole."""
        lab.running = lab.check(status, (want,))

    def switched(self, lab: Lab) -> None:
        """After the next `bundle switch`: the newest generation runs, whole."""
        lab.running = lab.check(lab.status(), (lab.latest(),))


@attrs.frozen
class UserManager(Manager):
    user: str = "apps"

    def run(self, lab: Lab, command: str) -> subprocess.CompletedProcess[str]:
        """`command` as the user, with what its systemctl --user needs, over root's SSH."""
        env = f"XDG_RUNTIME_DIR=/run/user/{sh(lab, f'id -u {self.user}')}"
        home = f"/home/{self.user}"
        quoted = f"cd {home} && {command}".replace("'", "'\\''")
        return lab.target.ssh(f"runuser -u {self.user} -- env {env} sh -c '{quoted}'", check=False)

    @property
    def systemctl(self) -> str:
        return "systemctl --user"

    def boot_log(self) -> str:
        return f"journalctl --user -b -u {BOOT_UNIT} -o cat --no-pager"  # its own log

    def service_log(self, service: str) -> str:
        return f"journalctl -b --user-unit {service} -o cat --no-pager"

    def settled(self, lab: Lab, timeout: float = 60) -> str:
        """After a boot: the system settled, then the user's manager (started by lingering)."""
        lab.target.ssh("systemctl is-system-running --wait", check=False)
        deadline = time.monotonic() + timeout
        said = ""
        while time.monotonic() < deadline:
            said = self.ask(lab, "systemctl --user is-system-running --wait")
            if said in ("running", "degraded"):
                return said
            time.sleep(0.2)  # its manager is not up yet: nothing to ask
        raise AssertionError(f"the user manager of {self.user} did not settle: {said!r}")

    def power_cut_at(self, lab: Lab, point: str) -> None:
        lab.fault(f"{point}:stop")  # /run/bundle-test-fault: the user's switcher reads it too
        client = lab.start("switch", "web1")
        pid = lab.stopped_switcher()
        assert sh(lab, f"ps -o user= -p {pid}") == self.user
        lab.target.power_cut()
        client.send_signal(signal.SIGINT)
        try:
            client.wait(timeout=10)
        except subprocess.TimeoutExpired:
            client.kill()
        client.communicate()
        assert self.settled(lab) == "running"

    def agrees(self, lab: Lab, status: dict, want: int) -> None:
        assert status["current"] == want and status["drift"] == [], status
        lab.no_fault()

    def switched(self, lab: Lab) -> None:
        lab.running = lab.latest()
        assert lab.p.json("status", "web1")["current"] == lab.running
        assert lab.p.fetch(8080) == lab.page(lab.running)


def the_unit_is_installed_before_the_units(lab: Lab, m: Manager) -> None:
    """bundle-recover.service is in the manager's units, enabled, ordered before basic.target,
    runs only with a journal or a boot generation, has its copy of the switcher, and is no
    drift."""
    unit = sh(lab, f"cat {m.units}/{BOOT_UNIT}")
    assert f"ConditionPathExists=|{m.state}/pending.json" in unit
    assert f"ConditionPathIsSymbolicLink=|{m.state}/boot-generation" in unit
    assert "Before=basic.target" in unit and "DefaultDependencies=no" in unit
    assert m.ask(lab, f"{m.systemctl} is-enabled {BOOT_UNIT}") == "enabled"
    assert sh(lab, f"test -f {m.state}/boot/activate/boot.py && echo yes") == "yes"
    assert lab.status()["drift"] == []


def ran_before_units(lab: Lab, m: Manager, want: int, other: int) -> None:
    """Nothing of `want` started before the repair ended, and the units only `other` has
    never started in this boot: the server never ran a mixture."""
    shown = m.show(
        lab, BOOT_UNIT, "ExecMainStartTimestampMonotonic", "ExecMainExitTimestampMonotonic"
    )
    began = int(shown["ExecMainStartTimestampMonotonic"] or 0)
    repaired = int(shown["ExecMainExitTimestampMonotonic"] or 0)
    assert 0 < began < repaired
    print(f"{BOOT_UNIT} took {(repaired - began) / 1e6:.2f} s")
    assert repaired - began < 15e6, "the repair held up the boot"  # µs; the unit allows 60 s
    mine = {f"{name}.service" for name in containers(lab, want)}
    for service in mine:
        started = int(
            m.show(lab, service, "InactiveExitTimestampMonotonic")["InactiveExitTimestampMonotonic"]
            or 0
        )
        assert started > repaired, (service, started, repaired)
    for service in {f"{name}.service" for name in containers(lab, other)} - mine:
        said = sh(lab, m.service_log(service))
        assert "Started" not in said and "Starting" not in said, (service, said)


def power_cut_mid_switch_is_repaired_at_boot(
    lab: Lab, m: Manager, point: str, ends_on: str, why: str
) -> None:
    """Cut the power while the switcher waits at `point`; after the boot the server runs the
    generation `ends_on` ("old" or "new") whole, repaired by the unit, and the deployer agrees."""
    old = lab.running
    lab.next_stack(f"power cut at {point}: {why}")
    m.power_cut_at(lab, point)
    new = lab.latest()
    want = old if ends_on == "old" else new
    folder = lab.local(want).name

    # the server, read with plain commands: no switcher ran since the boot but the unit
    assert sh(lab, f"test -e {m.state}/pending.json && echo left") == ""
    assert sh(lab, f"readlink {m.state}/current") == f"generations/{folder}"
    units = sh(lab, f"cd {m.quadlet} && sha256sum * | sort -k2")
    mine = sh(lab, f"cd {m.state}/current/units/quadlet && sha256sum * | sort -k2")
    assert units == mine, f"the unit files in {m.quadlet} are not those of the generation"
    ps = m.run(lab, "podman ps --format {{.Names}}")
    assert set(ps.stdout.split()) == containers(lab, want), (ps.stderr, ps.returncode)
    assert lab.p.fetch(8080) == lab.page(want)
    entry = lab.history()[-1]
    assert (entry["from"], entry["to"]) == (old, new), entry
    assert BOOT_UNIT in entry["message"], entry
    assert entry["result"] == ("ok" if ends_on == "new" else "rolled back"), entry
    shown = m.show(lab, BOOT_UNIT, "ConditionResult", "Result", "ExecMainStatus")
    assert shown == {"ConditionResult": "yes", "Result": "success", "ExecMainStatus": "0"}
    said = m.ask(lab, m.boot_log())
    assert ("finished" if ends_on == "new" else "undone") in said, said
    ran_before_units(lab, m, want, other=new if want == old else old)

    # then the deployer agrees, and goes on
    status = lab.status()
    assert status["recovered"] is None and status["interrupted"] is None, status
    m.agrees(lab, status, want)
    lab.p.ok("switch", "web1")
    m.switched(lab)
