"""Crash consistency on a real server: a deploy is hurt at each named point, then
`bundle status` must tell the truth, the server must run exactly the old or the new generation
with that generation's units, the next `bundle switch` must complete and every object must
still hash to its name.

One server and one project serve all the points in order; each point starts from the
generation the previous one left running. What happened at each point is written to
$BUNDLE_FAULT_RESULTS (default build/fault-results.json) and rendered into
docs/reliability.md by `python -m tests.faults.render`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from builder.base.words import plural
from builder.bundle.store import Store
from builder.deploy.push import stream
from tests.faults.harness import STATE, Lab, Outcome
from tests.harness import Target
from tests.server.conftest import make_deploy_project

REPO = Path(__file__).resolve().parents[2]
RESULTS = Path(os.environ.get("BUNDLE_FAULT_RESULTS", REPO / "build/fault-results.json"))
MID_STREAM = 400_000  # bytes to the server: well inside the push of a 1 MiB random file


@pytest.fixture(scope="module")
def lab(target: Target, registry: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    p = make_deploy_project(tmp_path_factory.mktemp("faults"), target)
    lab = Lab(p)
    lab.next_stack("the first generation")
    p.ok("switch", "web1")
    lab.running = lab.check(lab.status(), (1,))
    yield lab
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps([o.as_json() for o in lab.results], indent=2) + "\n")


def begin(lab: Lab, point: str, fault: str, **stack: bool) -> tuple[Outcome, int]:
    old = lab.running
    lab.next_stack(point, **stack)
    return Outcome(point, fault), old


# ---- the deployer and the network, during the push ------------------------------------------


def test_client_killed_during_push(lab: Lab) -> None:
    out, old = begin(
        lab,
        "client-killed-during-push",
        "`bundle switch` gets SIGKILL halfway through sending a 1 MiB file",
        big=True,
    )
    with lab.proxy("stall", MID_STREAM) as proxy:
        client = lab.start("switch", "web1")
        assert proxy.stalled.wait(60), "the push never got halfway"
        client.kill()
        out.deployer = lab.saw(client)
    lab.settle(out, old, lab.latest(), (old,))


def test_connection_dropped_during_push(lab: Lab) -> None:
    out, old = begin(
        lab,
        "connection-dropped-during-push",
        "the TCP connection breaks halfway through the push",
        big=True,
    )
    with lab.proxy("drop", MID_STREAM):
        out.deployer = lab.saw(lab.run("switch", "web1"))
    lab.settle(out, old, lab.latest(), (old,))


def test_flipped_bit_in_transit(lab: Lab) -> None:
    out, old = begin(
        lab,
        "flipped-bit-in-transit",
        "one bit of the SSH stream flipped on the way to the server",
        big=True,
    )
    with lab.proxy("flip", MID_STREAM):
        out.deployer = lab.saw(lab.run("switch", "web1"))
    lab.settle(out, old, lab.latest(), (old,))


def test_corrupt_stream_past_the_transport(lab: Lab) -> None:
    out, old = begin(
        lab,
        "corrupt-stream-past-the-transport",
        "the push stream reaches `receive` with one byte changed (corruption SSH did not catch)",
    )
    new = lab.build()
    gen = Store(lab.p.bundles, "web1").get(new)
    manifest = gen.manifest()
    data = bytearray(stream(gen, manifest, {e["sha256"] for e in manifest["files"].values()}))
    data[len(data) // 2] ^= 0x01
    lab.p.ok("push", "web1", "--generation", str(old))  # installs the switcher to receive with
    old_manifest = json.loads((lab.local(old) / "manifest.json").read_text())
    cwd = f"{STATE}/switchers/{old_manifest['switcher']}"
    r = lab.target.ssh(
        f"cd {cwd} && python3 -B -m activate receive --state {STATE}",
        input=bytes(data),
        check=False,
    )
    lines = r.stderr.strip().splitlines()
    assert r.returncode in (1, 2) and len(lines) == 1, r.stderr
    out.deployer = f"receive: exit {r.returncode}: {lines[0]}"
    lab.settle(out, old, new, (old,))


def test_disk_full_during_receive(lab: Lab) -> None:
    out, old = begin(
        lab,
        "disk-full-during-receive",
        "STATE/incoming is a 256 KiB tmpfs; the push brings a 1 MiB file",
        big=True,
    )
    with lab.small_disk("incoming", 256):
        out.deployer = lab.saw(lab.run("switch", "web1"))
        assert "space" in out.deployer
    lab.settle(out, old, lab.latest(), (old,))


# ---- the switcher killed while it receives ---------------------------------------------------


@pytest.mark.parametrize(
    ("point", "where"),
    [
        ("receive-after-object", "after the first object of the push is stored in staging"),
        (
            "receive-before-publish",
            "with the new generation assembled, before it is renamed into generations/",
        ),
        ("receive-after-publish", "right after the new generation is registered"),
    ],
)
def test_switcher_killed_while_receiving(lab: Lab, point: str, where: str) -> None:
    out, old = begin(
        lab, f"switcher-killed-{point}", f"the switcher gets SIGKILL {where}", big=True
    )
    lab.fault(point)
    out.deployer = lab.saw(lab.run("switch", "web1"))
    lab.settle(out, old, lab.latest(), (old,))


# ---- the switcher killed at each step of a switch ----------------------------------------------

STEPS = [
    ("switch-started", "with its journal written, before any change"),
    ("switch-stopped", "after stopping the container that goes away"),
    ("switch-flipped", "right after flipping `current`"),
    ("install-wrote-file", "after writing the first new unit file"),
    ("switch-installed", "with the new unit files written, before daemon-reload"),
    ("switch-starting", "after starting or restarting the first unit"),
    ("switch-running", "with every unit started, before the health gate"),
]


@pytest.mark.parametrize(("point", "where"), STEPS, ids=[s[0] for s in STEPS])
def test_switcher_killed_during_a_switch_is_undone(lab: Lab, point: str, where: str) -> None:
    out, old = begin(lab, f"switcher-killed-{point}", f"the switcher gets SIGKILL {where}")
    lab.fault(point)
    out.deployer = lab.saw(lab.run("switch", "web1"))
    lab.settle(out, old, lab.latest(), (old,))


def test_switcher_killed_after_its_last_change_is_finished(lab: Lab) -> None:
    out, old = begin(
        lab,
        "switcher-killed-switch-done",
        "the switcher gets SIGKILL after the last change, before its history line",
    )
    lab.fault("switch-done")
    out.deployer = lab.saw(lab.run("switch", "web1"))
    lab.settle(out, old, lab.latest(), (lab.latest(),))


def test_switcher_killed_on_its_way_back(lab: Lab) -> None:
    out, old = begin(
        lab,
        "switcher-killed-switch-restoring",
        "a container of the new generation cannot start; the switcher gets SIGKILL as it starts going back",
        broken=True,
    )
    lab.fault("switch-restoring")
    out.deployer = lab.saw(lab.run("switch", "web1"))
    lab.no_fault()
    lab.next_stack("switcher-killed-switch-restoring, fixed")
    lab.settle(out, old, lab.latest(), (old,))


def test_switcher_killed_from_outside(lab: Lab) -> None:
    out, old = begin(
        lab,
        "switcher-killed-from-outside",
        "`kill -9` of the switcher's pid from another shell, with the new units loaded",
    )
    lab.fault("switch-reloaded:stop")
    client = lab.start("switch", "web1")
    pid = lab.stopped_switcher()
    lab.target.ssh(f"kill -9 {pid}")
    out.deployer = lab.saw(client)
    lab.settle(out, old, lab.latest(), (old,))


# ---- the deployer or its connection lost while the server switches -------------------------


def test_client_killed_during_activation(lab: Lab) -> None:
    out, old = begin(
        lab,
        "client-killed-during-activation",
        "`bundle switch` gets SIGKILL while the server is switching (right after the flip)",
    )
    lab.fault("switch-flipped:stop")
    client = lab.start("switch", "web1")
    pid = lab.stopped_switcher()
    lab.no_fault()
    client.kill()
    out.deployer = lab.saw(client)
    lab.resume(pid)
    lab.wait_idle()
    lab.settle(out, old, lab.latest(), (old, lab.latest()))


def test_connection_dropped_during_activation(lab: Lab) -> None:
    out, old = begin(
        lab,
        "connection-dropped-during-activation",
        "the TCP connection breaks while the server is switching (right after the flip)",
    )
    lab.fault("switch-flipped:stop")
    with lab.proxy("pass") as proxy:
        client = lab.start("switch", "web1")
        pid = lab.stopped_switcher()
        lab.no_fault()
        proxy.cut()
        out.deployer = lab.saw(client)
    lab.resume(pid)
    lab.wait_idle()
    lab.settle(out, old, lab.latest(), (old, lab.latest()))


def test_disk_full_during_activation(lab: Lab) -> None:
    out, old = begin(
        lab,
        "disk-full-during-activation",
        "the state folder fills up right after the flip (a tmpfs, filled to the last block)",
    )
    lab.fault("switch-flipped:stop")
    client = lab.start("switch", "web1")
    pid = lab.stopped_switcher()
    lab.no_fault()
    with lab.small_disk("", 512):
        lab.fill()
        lab.resume(pid)
        out.deployer = lab.saw(client)
        lab.wait_idle()
    lab.settle(out, old, lab.latest(), (old,))


# ---- the power ----------------------------------------------------------------------------


def test_power_cut_during_receive(lab: Lab) -> None:
    out, old = begin(
        lab, "power-cut-during-receive", "power cut while the push is being received", big=True
    )
    out.deployer = lab.power_cut_at("receive-after-object")
    lab.settle(out, old, lab.latest(), (old,))


def test_power_cut_after_flip(lab: Lab) -> None:
    out, old = begin(
        lab,
        "power-cut-after-flip",
        "power cut right after `current` was flipped, with the old unit files still in /etc",
    )
    out.deployer = lab.power_cut_at("switch-flipped")
    lab.settle(out, old, lab.latest(), (old,))


def test_power_cut_while_starting(lab: Lab) -> None:
    out, old = begin(
        lab,
        "power-cut-while-starting",
        "power cut while the new units are being started, with the new unit files in /etc",
    )
    out.deployer = lab.power_cut_at("switch-starting")
    lab.settle(out, old, lab.latest(), (old,))


def test_the_table_in_docs_is_current(lab: Lab, request: pytest.FixtureRequest) -> None:
    """docs/reliability.md shows, cell for cell, the table this run makes (after a full run of
    the points): a changed message, outcome or repair fails here with the diff."""
    from tests.faults.render import stale

    points = [i for i in request.session.items if i.module is request.module]
    if len(lab.results) < len(points) - 1:
        return  # a partial run (-k), or a point that failed and says so itself
    diff = stale([o.as_json() for o in lab.results])
    assert diff is None, (
        f"docs/reliability.md's fault table is not what this run saw "
        f"({plural(len(lab.results), 'point')}); run `.venv/bin/python -m tests.faults.render` "
        f"and commit docs/reliability.md:\n{diff}"
    )
