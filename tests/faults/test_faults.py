"""Crash consistency on a real server: a deploy is hurt at each named point, then
`bundle status` must tell the truth, the server must run exactly the old or the new generation
with that generation's units, the next `bundle switch` must complete and every object must
still hash to its name.

Each point is a row of POINTS: what is done, and a function that does it. One server and one
project serve all the points in order; each point starts from the generation the previous one
left running. What happened at each point is written to
$BUNDLE_FAULT_RESULTS (default build/fault-results.json) and rendered into
docs/reliability.md by `python -m tests.faults.render`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
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


Hurt = Callable[[Lab], str]  # does the harm; returns what the deployer saw


@attrs.frozen
class Point:
    """A fault point: one row of the table in docs/reliability.md."""

    name: str
    fault: str  # what is done, in the table's words
    hurt: Hurt
    big: bool = False  # the push carries a 1 MiB random file (it takes a while)
    broken: bool = False  # a container of the new generation cannot start
    ends_on: tuple[str, ...] = ("old",)  # the generations ("old", "new") that may run after


# ---- the deployer and the network, during the push ------------------------------------------


def client_killed_during_push(lab: Lab) -> str:
    with lab.proxy("stall", MID_STREAM) as proxy:
        client = lab.start("switch", "web1")
        assert proxy.stalled.wait(60), "the push never got halfway"
        client.kill()
        return lab.saw(client)


def through_proxy(mode: str) -> Hurt:
    def hurt(lab: Lab) -> str:
        with lab.proxy(mode, MID_STREAM):
            return lab.saw(lab.run("switch", "web1"))

    return hurt


def corrupt_stream_past_the_transport(lab: Lab) -> str:
    old = lab.running
    new = lab.build()
    gen = Store(lab.p.bundles, "web1").get(new)
    manifest = gen.load_manifest()
    data = bytearray(stream(gen, manifest, {e.sha256 for e in manifest.files.values()}))
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
    return f"receive: exit {r.returncode}: {lines[0]}"


def disk_full_during_receive(lab: Lab) -> str:
    with lab.small_disk("incoming", 256):
        saw = lab.saw(lab.run("switch", "web1"))
        assert "space" in saw
    return saw


# ---- the switcher killed at a step of receiving or switching ---------------------------------


def killed_at(step: str) -> Hurt:
    def hurt(lab: Lab) -> str:
        lab.fault(step)
        return lab.saw(lab.run("switch", "web1"))

    return hurt


def killed_on_its_way_back(lab: Lab) -> str:
    saw = killed_at("switch-restoring")(lab)
    lab.no_fault()
    lab.next_stack("switcher-killed-switch-restoring, fixed")
    return saw


def killed_from_outside(lab: Lab) -> str:
    lab.fault("switch-reloaded:stop")
    client = lab.start("switch", "web1")
    pid = lab.stopped_switcher()
    lab.target.ssh(f"kill -9 {pid}")
    return lab.saw(client)


# ---- the deployer or its connection lost while the server switches -------------------------


def client_killed_during_activation(lab: Lab) -> str:
    lab.fault("switch-flipped:stop")
    client = lab.start("switch", "web1")
    pid = lab.stopped_switcher()
    lab.no_fault()
    client.kill()
    saw = lab.saw(client)
    lab.resume(pid)
    lab.wait_idle()
    return saw


def connection_dropped_during_activation(lab: Lab) -> str:
    lab.fault("switch-flipped:stop")
    with lab.proxy("pass") as proxy:
        client = lab.start("switch", "web1")
        pid = lab.stopped_switcher()
        lab.no_fault()
        proxy.cut()
        saw = lab.saw(client)
    lab.resume(pid)
    lab.wait_idle()
    return saw


def disk_full_during_activation(lab: Lab) -> str:
    lab.fault("switch-flipped:stop")
    client = lab.start("switch", "web1")
    pid = lab.stopped_switcher()
    lab.no_fault()
    with lab.small_disk("", 512):
        lab.fill()
        lab.resume(pid)
        saw = lab.saw(client)
        lab.wait_idle()
    return saw


# ---- the power ----------------------------------------------------------------------------


def power_cut_at(step: str) -> Hurt:
    def hurt(lab: Lab) -> str:
        return lab.power_cut_at(step)

    return hurt


RECEIVING = [
    ("receive-after-object", "after the first object of the push is stored in staging"),
    (
        "receive-before-publish",
        "with the new generation assembled, before it is renamed into generations/",
    ),
    ("receive-after-publish", "right after the new generation is registered"),
]
STEPS = [
    ("switch-started", "with its journal written, before any change"),
    ("switch-stopped", "after stopping the container that goes away"),
    ("switch-flipped", "right after flipping `current`"),
    ("install-wrote-file", "after writing the first new unit file"),
    ("switch-installed", "with the new unit files written, before daemon-reload"),
    ("switch-starting", "after starting or restarting the first unit"),
    ("switch-running", "with every unit started, before the health gate"),
]
AFTER_THE_FLIP = ("old", "new")  # the switcher, resumed, may finish or undo the switch

# In the order of the table in docs/reliability.md.
POINTS = [
    Point(
        "client-killed-during-push",
        "`bundle switch` gets SIGKILL halfway through sending a 1 MiB file",
        client_killed_during_push,
        big=True,
    ),
    Point(
        "connection-dropped-during-push",
        "the TCP connection breaks halfway through the push",
        through_proxy("drop"),
        big=True,
    ),
    Point(
        "flipped-bit-in-transit",
        "one bit of the SSH stream flipped on the way to the server",
        through_proxy("flip"),
        big=True,
    ),
    Point(
        "corrupt-stream-past-the-transport",
        "the push stream reaches `receive` with one byte changed (corruption SSH did not catch)",
        corrupt_stream_past_the_transport,
    ),
    Point(
        "disk-full-during-receive",
        "STATE/incoming is a 256 KiB tmpfs; the push brings a 1 MiB file",
        disk_full_during_receive,
        big=True,
    ),
    *(
        Point(
            f"switcher-killed-{step}",
            f"the switcher gets SIGKILL {where}",
            killed_at(step),
            big=True,
        )
        for step, where in RECEIVING
    ),
    *(
        Point(f"switcher-killed-{step}", f"the switcher gets SIGKILL {where}", killed_at(step))
        for step, where in STEPS
    ),
    Point(
        "switcher-killed-switch-done",
        "the switcher gets SIGKILL after the last change, before its history line",
        killed_at("switch-done"),
        ends_on=("new",),
    ),
    Point(
        "switcher-killed-switch-restoring",
        "a container of the new generation cannot start; the switcher gets SIGKILL as it starts going back",
        killed_on_its_way_back,
        broken=True,
    ),
    Point(
        "switcher-killed-from-outside",
        "`kill -9` of the switcher's pid from another shell, with the new units loaded",
        killed_from_outside,
    ),
    Point(
        "client-killed-during-activation",
        "`bundle switch` gets SIGKILL while the server is switching (right after the flip)",
        client_killed_during_activation,
        ends_on=AFTER_THE_FLIP,
    ),
    Point(
        "connection-dropped-during-activation",
        "the TCP connection breaks while the server is switching (right after the flip)",
        connection_dropped_during_activation,
        ends_on=AFTER_THE_FLIP,
    ),
    Point(
        "disk-full-during-activation",
        "the state folder fills up right after the flip (a tmpfs, filled to the last block)",
        disk_full_during_activation,
    ),
    Point(
        "power-cut-during-receive",
        "power cut while the push is being received",
        power_cut_at("receive-after-object"),
        big=True,
    ),
    Point(
        "power-cut-after-flip",
        "power cut right after `current` was flipped, with the old unit files still in /etc",
        power_cut_at("switch-flipped"),
    ),
    Point(
        "power-cut-while-starting",
        "power cut while the new units are being started, with the new unit files in /etc",
        power_cut_at("switch-starting"),
    ),
]


@pytest.mark.parametrize("point", POINTS, ids=[p.name for p in POINTS])
def test_a_hurt_deploy_leaves_one_whole_generation_and_the_next_one_works(
    lab: Lab, point: Point
) -> None:
    old = lab.running
    lab.next_stack(point.name, big=point.big, broken=point.broken)
    out = Outcome(point.name, point.fault)
    out.deployer = point.hurt(lab)
    new = lab.latest()
    lab.settle(out, old, new, tuple(old if g == "old" else new for g in point.ends_on))


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
