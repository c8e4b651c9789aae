"""A switch killed at any step is finished or undone by the next run of the switcher.

The switcher is killed for real (SIGKILL, through the BUNDLE_FAULT hook of activate/faults.py)
at each step its journal STATE/pending.json records, with the managed-services path against
the stand-in systemctl/podman (fake_tools.py). Afterwards `status` must repair the server, and
the server must hold exactly one generation: `current`, the unit files under ROOT and the
running services all of that generation and of no other.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

import pytest

from .conftest import Run, services, web_stack
from .switcherkit import Bundle, U, push

QUADLET = Path("etc/containers/systemd")
SYSTEMD = Path("etc/systemd/system")


def api(name: str) -> dict[str, U]:
    image = f"docker.io/library/{name}:1"
    return {f"{name}.container": U(f"[Container]\nImage={image}\n", image=image)}


def two_generations(state: Path, root: Path) -> tuple[Bundle, Bundle]:
    """1 runs web and api; 2 changes web's page, drops api and adds cache: a switch stops,
    starts, restarts and removes a unit file."""
    first = web_stack(1, state, extra=api("api"))
    second = web_stack(2, state, index=b"v2\n", extra=api("cache"))
    for bundle in (first, second):
        assert push(bundle, state, root).rc == 0
    return first, second


def assert_runs(bundle: Bundle | None, state: Path, root: Path, fake: dict[str, str]) -> None:
    """The server holds exactly `bundle` (None: nothing at all)."""
    link = state / "current"
    assert (os.readlink(link) if link.is_symlink() else None) == (
        f"generations/{bundle.folder}" if bundle else None
    )
    units = bundle.manifest["units"] if bundle else {}
    want = {
        (QUADLET if u["path"].startswith("units/quadlet") else SYSTEMD) / key: u["path"]
        for key, u in units.items()
    }
    found = {
        path.relative_to(root)
        for folder in (QUADLET, SYSTEMD)
        if (root / folder).is_dir()
        for path in (root / folder).iterdir()
    }
    assert found == set(want), "unit files under ROOT"
    for dest, source in want.items():
        assert (root / dest).read_bytes() == bundle.files[source][0]  # type: ignore[union-attr]
    should_run = {u["service"] for u in units.values() if u["enable"]}
    assert set(services(fake)["active"]) == should_run
    assert not (state / "pending.json").exists()


KILLED_AT = [
    "switch-started",
    "switch-stopped",
    "switch-flipped",
    "install-wrote-file",
    "switch-installed",
    "switch-reloaded",
    "switch-starting",
    "switch-running",
]


@pytest.mark.parametrize("point", KILLED_AT)
def test_switch_killed_at_a_step_is_undone_by_the_next_status(
    point: str, run: Run, fake: dict[str, str], state: Path, root: Path
) -> None:
    first, second = two_generations(state, root)
    assert run("activate", "--generation", "1").rc == 0

    killed = run("activate", "--generation", "2", env={"BUNDLE_FAULT": point})

    assert killed.rc == -9, killed
    journal = json.loads((state / "pending.json").read_text())
    assert (journal["action"], journal["from"], journal["to"]) == ("activate", 1, 2)
    status = run("status")
    assert status.rc == 0, status
    assert status.data["recovered"]["result"] == "undone"
    assert status.data["recovered"]["interrupted"]["step"] == journal["step"]
    assert status.data["current"] == 1 and status.data["interrupted"] is None
    assert_runs(first, state, root, fake)
    last = status.data["last"]
    assert (last["from"], last["to"], last["result"]) == (1, 2, "rolled back")
    assert f"killed after step {journal['step']}" in last["message"]

    again = run("activate", "--generation", "2")
    assert again.rc == 0, again
    assert_runs(second, state, root, fake)


def test_switch_killed_after_its_last_change_is_finished(
    run: Run, fake: dict[str, str], state: Path, root: Path
) -> None:
    _first, second = two_generations(state, root)
    assert run("activate", "--generation", "1").rc == 0

    killed = run("activate", "--generation", "2", env={"BUNDLE_FAULT": "switch-done"})

    assert killed.rc == -9, killed
    status = run("status")
    assert status.data["recovered"]["result"] == "finished"
    assert status.data["current"] == 2
    assert_runs(second, state, root, fake)
    last = status.data["last"]
    assert (last["from"], last["to"], last["result"]) == (1, 2, "ok")
    history = (state / "history.jsonl").read_text().splitlines()
    assert len(history) == 2  # one line for the killed switch, written once


def test_switch_killed_on_its_way_back_is_undone(
    run: Run, fake: dict[str, str], state: Path, root: Path
) -> None:
    first, _second = two_generations(state, root)
    assert run("activate", "--generation", "1").rc == 0

    killed = run(
        "activate",
        "--generation",
        "2",
        env={"BUNDLE_FAULT": "switch-restoring", "FAKE_FAIL_START": "cache.service"},
    )

    assert killed.rc == -9, killed
    assert json.loads((state / "pending.json").read_text())["step"] == "restoring"
    recovered = run("recover")
    assert recovered.rc == 0, recovered
    assert recovered.data["recovered"]["result"] == "undone"
    assert_runs(first, state, root, fake)
    assert run("recover").data == {"recovered": None}  # nothing left to do


def test_first_activation_killed_leaves_nothing_behind(
    run: Run, fake: dict[str, str], state: Path, root: Path
) -> None:
    first, _second = two_generations(state, root)

    killed = run("activate", "--generation", "1", env={"BUNDLE_FAULT": "switch-reloaded"})

    assert killed.rc == -9, killed
    status = run("status")
    assert status.data["recovered"]["result"] == "undone"
    assert status.data["current"] is None
    assert_runs(None, state, root, fake)
    assert run("activate", "--generation", "1").rc == 0
    assert_runs(first, state, root, fake)


def test_next_activation_repairs_first_and_says_so(
    run: Run, fake: dict[str, str], state: Path, root: Path
) -> None:
    _first, second = two_generations(state, root)
    assert run("activate", "--generation", "1").rc == 0
    assert run("activate", "--generation", "2", env={"BUNDLE_FAULT": "switch-flipped"}).rc == -9

    again = run("activate", "--generation", "2")

    assert again.rc == 0, again
    assert again.data["recovered"]["result"] == "undone"
    assert again.data["from"] == 1  # undone first, then switched from 1 for real
    assert_runs(second, state, root, fake)


def test_rollback_repairs_first(run: Run, fake: dict[str, str], state: Path, root: Path) -> None:
    first, _second = two_generations(state, root)
    assert run("activate", "--generation", "1").rc == 0
    assert run("activate", "--generation", "2", env={"BUNDLE_FAULT": "switch-installed"}).rc == -9

    back = run("rollback", "--to", "1")

    assert back.rc == 0, back
    assert_runs(first, state, root, fake)


def test_status_leaves_a_running_switch_alone(
    run: Run, fake: dict[str, str], state: Path, root: Path
) -> None:
    two_generations(state, root)
    assert run("activate", "--generation", "1").rc == 0
    record = {"action": "activate", "from": 1, "to": 2, "since": "now", "step": "flipped"}
    (state / "pending.json").write_text(json.dumps(record))
    fd = os.open(state / "lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as a switch that is still running holds it

        status = run("status")

        assert status.rc == 0, status
        assert status.data["switching"]["step"] == "flipped"
        assert status.data["recovered"] is None and status.data["interrupted"] is None
        assert (state / "pending.json").exists()
    finally:
        os.close(fd)
