"""bundle-recover.service (activate/boot.py) without a server: the unit, its idempotent
installation and removal, and the repair at boot against the stand-in systemctl/podman."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from activate import boot, boot_unit, scope
from activate.store import Store
from activate.systemd import FilesOnly

from .conftest import Run, calls, n_calls
from .switcherkit import REPO
from .test_recover import assert_runs, two_generations

UNIT_TEXTS = [
    pytest.param(
        Path("/srv/state"),
        False,
        {
            "DefaultDependencies=no",
            "After=local-fs.target sysinit.target",
            "Before=basic.target shutdown.target",
            "ConditionPathExists=|/srv/state/pending.json",
            "ConditionPathIsSymbolicLink=|/srv/state/boot-generation",
            "Type=oneshot",
            "WorkingDirectory=/srv/state/boot",
            "ExecStart=/usr/bin/python3 -B -m activate.boot --state /srv/state",
            f"TimeoutStartSec={boot_unit.TIMEOUT}",
            "WantedBy=multi-user.target",
        },
        id="system",
    ),
    pytest.param(
        Path("/home/apps/.local/state/bundle"),
        True,
        {
            "DefaultDependencies=no",
            "Before=basic.target shutdown.target",
            "ConditionPathExists=|/home/apps/.local/state/bundle/pending.json",
            "ConditionPathIsSymbolicLink=|/home/apps/.local/state/bundle/boot-generation",
            "WorkingDirectory=/home/apps/.local/state/bundle/boot",
            "ExecStart=/usr/bin/python3 -B -m activate.boot --state /home/apps/.local/state/bundle",
            f"TimeoutStartSec={boot_unit.USER_TIMEOUT}",
            "WantedBy=default.target",
        },
        id="user",
    ),
]


@pytest.mark.parametrize(("state", "rootless", "wanted"), UNIT_TEXTS)
def test_the_unit_runs_before_the_managers_basic_target_and_only_with_a_journal_or_boot_link(
    state: Path, rootless: bool, wanted: set[str]
) -> None:
    text = boot_unit.unit_text(state, "/usr/bin/python3", rootless)
    lines = set(text.splitlines())
    assert wanted <= lines
    if rootless:
        # the user manager has neither; it starts long after the system reached both
        assert not any(line.startswith("After=") for line in lines), text
        assert f"journalctl --user -u {boot_unit.UNIT}" in text


APPS = scope.Scope(True, "apps", 1000, Path("/home/apps"))


def test_a_rootless_install_goes_to_the_users_units(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scope, "for_root", lambda root: APPS)
    store, root = Store(tmp_path / "state"), tmp_path / "root"
    store.ensure()
    unit, link = boot_unit.unit_paths(root)
    user_units = root / "home/apps/.config/systemd/user"
    assert (unit, link) == (
        user_units / boot_unit.UNIT,
        user_units / "default.target.wants" / boot_unit.UNIT,
    )

    assert boot_unit.install(store, root, FilesOnly()) == [
        str(store.root / "boot"),
        str(unit),
        str(link),
    ]
    assert link.readlink() == Path("/home/apps/.config/systemd/user", boot_unit.UNIT)
    assert "WantedBy=default.target" in unit.read_text()
    assert not (root / "etc").exists()
    assert boot_unit.install(store, root, FilesOnly()) == []
    assert boot_unit.remove(store, root, FilesOnly()) == [
        str(unit),
        str(link),
        str(store.root / "boot"),
    ]


def test_queued_jobs_go_to_the_users_manager_when_rootless_and_start_afresh(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(scope, "CURRENT", APPS)
    seen: list[list[str]] = []

    def fake_run(argv: list[str], *args: object, **kwargs: object) -> Any:
        seen.append(list(argv))
        return subprocess.CompletedProcess(argv, 0, "", "")

    queued = boot.Queued()
    monkeypatch.setattr(queued, "_run", fake_run)
    queued.start("web.service")
    queued.stop("other.service")
    assert seen == [
        ["systemctl", "--user", "reset-failed", "--", "web.service"],
        ["systemctl", "--user", "start", "--no-block", "--", "web.service"],
        ["systemctl", "--user", "stop", "--no-block", "--", "other.service"],
    ]


def test_install_is_idempotent_and_puts_back_what_changed(tmp_path: Path) -> None:
    store, root = Store(tmp_path / "state"), tmp_path / "root"
    store.ensure()
    unit, link = boot_unit.unit_paths(root)

    first = boot_unit.install(store, root, FilesOnly())

    assert first == [str(store.root / "boot"), str(unit), str(link)]
    assert link.is_symlink() and str(Path(*link.readlink().parts[-4:])) == str(
        Path("etc/systemd/system", boot_unit.UNIT)
    )
    copy = store.root / "boot/activate"
    shipped = sorted(p.name for p in (REPO / "activate").glob("*.py"))
    assert sorted(p.name for p in copy.iterdir()) == shipped
    assert boot_unit.install(store, root, FilesOnly()) == []

    unit.write_text("edited by hand\n")
    (copy / "stale.py").write_text("")
    (copy / "recover.py").write_text("# older\n")
    assert boot_unit.install(store, root, FilesOnly()) == [str(store.root / "boot"), str(unit)]
    assert sorted(p.name for p in copy.iterdir()) == shipped
    assert (copy / "recover.py").read_bytes() == (REPO / "activate/recover.py").read_bytes()

    removed = boot_unit.remove(store, root, FilesOnly())
    assert removed == [str(unit), str(link), str(store.root / "boot")]
    assert not unit.exists() and not link.is_symlink() and not copy.exists()


def test_a_masked_unit_stays_masked(tmp_path: Path) -> None:
    store, root = Store(tmp_path / "state"), tmp_path / "root"
    store.ensure()
    unit, link = boot_unit.unit_paths(root)
    unit.parent.mkdir(parents=True)
    unit.symlink_to("/dev/null")  # what `systemctl mask` makes

    assert boot_unit.install(store, root, FilesOnly()) == [str(store.root / "boot")]
    assert unit.readlink() == Path("/dev/null") and not link.is_symlink()


def test_only_a_real_root_gets_the_unit(tmp_path: Path) -> None:
    assert not boot_unit.applies(tmp_path, FilesOnly())
    assert not boot_unit.applies(Path("/"), FilesOnly())


def test_nothing_pending_or_no_state_does_nothing(tmp_path: Path) -> None:
    for state in (tmp_path / "missing", tmp_path):
        assert boot.run(state, tmp_path, FilesOnly()) == 0


def test_an_unreadable_journal_is_dropped_and_one_naming_no_generation_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = Store(tmp_path / "state")
    store.ensure()
    store.pending_path.write_text("{not json")
    assert boot.run(store.root, tmp_path, FilesOnly()) == 0
    assert not store.pending_path.exists()
    assert "unreadable" in capsys.readouterr().out

    record = {"action": "activate", "from": None, "to": 9, "step": "flipped", "since": "x"}
    store.pending_path.write_text(json.dumps(record))
    assert boot.run(store.root, tmp_path, FilesOnly()) == 1
    assert "generation 9 is not on this server" in capsys.readouterr().err
    assert store.pending_path.exists()  # left for a person, or the next switcher run


def at_boot(state: Path, root: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """What the unit runs, against the stand-in tools."""
    return subprocess.run(
        [sys.executable, "-B", "-m", "activate.boot", "--state", str(state), "--root", str(root)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("point", ["switch-flipped", "switch-reloaded", "switch-running"])
def test_a_killed_switch_is_undone_with_queued_jobs(
    point: str, run: Run, fake: dict[str, str], state: Path, root: Path
) -> None:
    first, _second = two_generations(state, root)
    assert run("activate", "--generation", "1").rc == 0
    assert run("activate", "--generation", "2", env={"BUNDLE_FAULT": point}).rc == -9
    since = n_calls(fake)

    done = at_boot(state, root, fake)

    assert done.returncode == 0, done
    assert "activate 1 -> 2" in done.stdout and "undone; generation 1 is active" in done.stdout
    assert_runs(first, state, root, fake)
    jobs = [c for c in calls(fake, since) if c.split()[1] in ("start", "restart", "stop")]
    assert jobs and all("--no-block" in c for c in jobs), jobs
    last = json.loads((state / "history.jsonl").read_text().splitlines()[-1])
    assert last["result"] == "rolled back" and boot.BY in last["message"]


def test_a_switch_killed_after_its_last_change_is_finished_and_nothing_restarted(
    run: Run, fake: dict[str, str], state: Path, root: Path
) -> None:
    _first, second = two_generations(state, root)
    assert run("activate", "--generation", "1").rc == 0
    assert run("activate", "--generation", "2", env={"BUNDLE_FAULT": "switch-done"}).rc == -9
    since = n_calls(fake)

    done = at_boot(state, root, fake)

    assert done.returncode == 0, done
    assert "finished; generation 2 stays" in done.stdout
    assert_runs(second, state, root, fake)
    assert calls(fake, since) == []  # finishing is bookkeeping: no unit touched
