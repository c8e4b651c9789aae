"""activate, rollback, plan, status, generations with ROOT a folder (files only)."""

from __future__ import annotations

import fcntl
import json
import os
import stat
from pathlib import Path

from .conftest import web_stack
from .switcherkit import REPO, Bundle, U, finish, push, switcher

QUADLET = Path("etc/containers/systemd")
SYSTEMD = Path("etc/systemd/system")


def current(state: Path) -> str | None:
    link = state / "current"
    return os.readlink(link) if link.is_symlink() else None


def history(state: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (state / "history.jsonl").read_text().splitlines()]


def installed(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


def pushed(bundle: Bundle, state: Path, root: Path) -> Bundle:
    r = push(bundle, state, root)
    assert r.rc == 0, r
    return bundle


def test_activate_flips_current_and_installs_unit_files(state: Path, root: Path) -> None:
    bundle = pushed(web_stack(1, state), state, root)

    r = switcher("activate", state, root, "--generation", "1")

    assert r.rc == 0, r
    assert r.data["from"] is None and r.data["to"] == 1 and r.data["result"] == "ok"
    assert r.data["services"] == "not managed"
    assert r.data["plan"]["start"] == ["web-data.volume", "backup.timer", "web.container"]
    assert current(state) == f"generations/{bundle.folder}"
    assert installed(root) == {
        str(QUADLET / "web.container"): bundle.files["units/quadlet/web.container"][0].decode(),
        str(QUADLET / "web-data.volume"): "[Volume]\n",
        str(SYSTEMD / "backup.service"): bundle.files["units/systemd/backup.service"][0].decode(),
        str(SYSTEMD / "backup.timer"): bundle.files["units/systemd/backup.timer"][0].decode(),
    }
    assert stat.S_IMODE((root / QUADLET / "web.container").stat().st_mode) == 0o644
    # Units reach config files through STATE/current, so the flip makes them live.
    assert (state / "current/files/web/index.html").read_bytes() == b"hello\n"
    assert os.access(state / "current/scripts/backup.sh", os.X_OK)
    last = history(state)[-1]
    assert (last["action"], last["from"], last["to"], last["result"]) == ("activate", None, 1, "ok")


def test_next_generation_updates_changed_and_removes_dropped_units(state: Path, root: Path) -> None:
    pushed(web_stack(1, state), state, root)
    assert switcher("activate", state, root, "--generation", "1").rc == 0
    api = U("[Container]\nImage=docker.io/library/api:1\n", image="docker.io/library/api:1")
    second = web_stack(2, state, index=b"v2\n", extra={"api.container": api})
    del second.manifest["units"]["backup.timer"]
    finish(second)
    pushed(second, state, root)

    plan = switcher("plan", state, root, "--generation", "2")
    r = switcher("activate", state, root, "--generation", "2")

    assert plan.rc == 0 and plan.data["plan"] == r.data["plan"], plan
    assert r.rc == 0, r
    assert r.data["plan"]["restart"] == ["web.container"]
    assert r.data["plan"]["start"] == ["api.container"]
    assert r.data["plan"]["stop"] == ["backup.timer"]
    assert r.data["plan"]["remove"] == ["backup.timer"]
    assert r.data["plan"]["reasons"]["web.container"] == "changed: files/web/index.html"
    assert not (root / SYSTEMD / "backup.timer").exists()
    assert (root / QUADLET / "api.container").read_text() == api.text
    assert (state / "current/files/web/index.html").read_bytes() == b"v2\n"


def test_plan_changes_nothing(state: Path, root: Path) -> None:
    pushed(web_stack(1, state), state, root)

    r = switcher("plan", state, root, "--generation", "1")

    assert r.rc == 0, r
    assert r.data["from"] is None and r.data["to"] == 1
    assert r.data["plan"]["start"] == ["web-data.volume", "backup.timer", "web.container"]
    assert current(state) is None
    assert installed(root) == {}


def test_rollback_runs_the_old_generations_own_switcher(state: Path, root: Path) -> None:
    # Generation 1 carries a marked switcher: the rollback report must come from that copy.
    report = (REPO / "activate/report.py").read_text()
    marked = report.replace("json.dumps(obj,", 'json.dumps({**obj, "by": "gen1"},')
    assert marked != report
    first = pushed(
        web_stack(1, state, switcher_patch={"activate/report.py": marked.encode()}), state, root
    )
    pushed(web_stack(2, state, index=b"v2\n"), state, root)
    assert switcher("activate", state, root, "--generation", "1").rc == 0
    assert switcher("activate", state, root, "--generation", "2").rc == 0

    r = switcher("rollback", state, root)

    assert r.rc == 0, r
    assert r.data["by"] == "gen1"
    assert r.data["from"] == 2 and r.data["to"] == 1
    assert r.data["plan"]["restart"] == ["web.container"]
    assert current(state) == f"generations/{first.folder}"
    assert (state / "current/files/web/index.html").read_bytes() == b"hello\n"
    last = history(state)[-1]
    assert (last["action"], last["from"], last["to"], last["result"]) == ("rollback", 2, 1, "ok")


def test_rollback_walks_back_and_stops_at_the_first_generation(state: Path, root: Path) -> None:
    for n in (1, 2, 3):
        pushed(web_stack(n, state, index=f"v{n}\n".encode()), state, root)
        assert switcher("activate", state, root, "--generation", str(n)).rc == 0

    assert switcher("rollback", state, root).data["to"] == 2
    assert switcher("rollback", state, root).data["to"] == 1
    last = switcher("rollback", state, root)

    assert last.rc == 1, last
    assert "rollback --to N" in last.stderr
    assert switcher("rollback", state, root, "--to", "3").data["to"] == 3


def test_deployer_style_rollback_from_inside_the_old_generation(state: Path, root: Path) -> None:
    first = pushed(web_stack(1, state), state, root)
    pushed(web_stack(2, state, index=b"v2\n"), state, root)
    assert switcher("activate", state, root, "--generation", "1").rc == 0
    assert switcher("activate", state, root, "--generation", "2").rc == 0

    old_dir = state / "generations" / first.folder
    r = switcher("activate", state, root, "--generation", "1", cwd=old_dir)

    assert r.rc == 0, r
    assert current(state) == f"generations/{first.folder}"
    assert not list(old_dir.rglob("__pycache__"))


def test_hand_edited_unit_file_is_drift_and_refused_until_forced(state: Path, root: Path) -> None:
    pushed(web_stack(1, state), state, root)
    pushed(web_stack(2, state, index=b"v2\n"), state, root)
    assert switcher("activate", state, root, "--generation", "1").rc == 0
    (root / QUADLET / "web.container").write_text("[Container]\nImage=hacked\n")
    (root / SYSTEMD / "backup.timer").unlink()

    status = switcher("status", state, root)
    refused = switcher("activate", state, root, "--generation", "2")

    assert len(status.data["drift"]) == 2, status
    assert refused.rc == 1, refused
    assert "web.container (changed" in refused.stderr
    assert "backup.timer (missing" in refused.stderr
    assert "--force" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert (current(state) or "").startswith("generations/1-")

    forced = switcher("activate", state, root, "--generation", "2", "--force")

    assert forced.rc == 0, forced
    assert len(forced.data["overwritten"]) == 2
    assert "Image=hacked" not in (root / QUADLET / "web.container").read_text()
    assert (root / SYSTEMD / "backup.timer").exists()


def test_unmanaged_file_in_the_way_is_drift(state: Path, root: Path) -> None:
    pushed(web_stack(1, state), state, root)
    (root / QUADLET).mkdir(parents=True)
    (root / QUADLET / "web.container").write_text("[Container]\nImage=by-hand\n")

    r = switcher("activate", state, root, "--generation", "1")

    assert r.rc == 1, r
    assert "not managed by bundle" in r.stderr
    assert switcher("activate", state, root, "--generation", "1", "--force").rc == 0


def test_held_lock_is_refused_naming_its_holder(state: Path, root: Path) -> None:
    pushed(web_stack(1, state), state, root)
    with open(state / "lock", "r+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fh.write(
            json.dumps(
                {
                    "user": "alice",
                    "pid": 4242,
                    "host": "laptop",
                    "command": "activate 7",
                    "since": "2026-11-25T15:00:00Z",
                }
            )
        )
        fh.flush()

        r = switcher("activate", state, root, "--generation", "1")
        gc = switcher("gc", state, root, "--keep", "1")

    assert r.rc == 1, r
    assert "alice" in r.stderr and "2026-11-25T15:00:00Z" in r.stderr and "pid 4242" in r.stderr
    assert gc.rc == 1 and "alice" in gc.stderr
    assert current(state) is None
    # The kernel dropped the lock with the file handle: the next run goes ahead.
    assert switcher("activate", state, root, "--generation", "1").rc == 0


def test_unknown_generation_is_bad_input_on_one_line(state: Path, root: Path) -> None:
    pushed(web_stack(1, state), state, root)

    r = switcher("activate", state, root, "--generation", "9")

    assert r.rc == 2, r
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert "generation 9 is not on this server" in r.stderr


def test_bad_arguments_are_bad_input(state: Path, root: Path) -> None:
    r = switcher("activate", state, root, "--generation", "x")

    assert r.rc == 2, r
    assert r.stderr.count("\n") == 1


def test_status_and_generations(state: Path, root: Path) -> None:
    pushed(web_stack(1, state), state, root)
    second = pushed(web_stack(2, state, index=b"v2\n"), state, root)
    assert switcher("activate", state, root, "--generation", "1").rc == 0
    assert switcher("activate", state, root, "--generation", "2").rc == 0

    status = switcher("status", state, root)
    gens = switcher("generations", state, root)

    assert status.rc == 0, status
    assert status.data["current"] == 2
    assert status.data["units"]["web.container"] == {
        "service": "web.service",
        "active": None,
        "sub": None,
        "main_pid": None,
    }
    assert status.data["last"]["to"] == 2
    assert status.data["drift"] == []
    assert [(g["generation"], g["active"], g["units"]) for g in gens.data] == [
        (1, False, 4),
        (2, True, 4),
    ]
    assert gens.data[1]["hash"] == second.hash
    assert gens.data[0]["rollback_target"] is True


def test_interrupted_switch_is_finished_without_force(state: Path, root: Path) -> None:
    first = pushed(web_stack(1, state), state, root)
    pushed(
        web_stack(2, state, index=b"v2\n", extra={"api.container": U("[Container]\nImage=api\n")}),
        state,
        root,
    )
    assert switcher("activate", state, root, "--generation", "1").rc == 0
    # As if killed after the flip and half the unit files: current says 2, files are mixed.
    (state / "pending.json").write_text(json.dumps({"from": 1, "to": 2, "since": "x"}))
    second_dir = next((state / "generations").glob("2-*"))
    os.replace(state / "current", state / "old-current")
    os.symlink(f"generations/{second_dir.name}", state / "current")
    (root / QUADLET / "api.container").write_text("[Container]\nImage=api\n")

    r = switcher("rollback", state, root, "--to", "1")

    assert r.rc == 0, r
    history = [json.loads(line) for line in (state / "history.jsonl").read_text().splitlines()]
    undone = history[-2]  # the interrupted switch, undone before the rollback ran
    assert (undone["from"], undone["to"], undone["result"]) == (1, 2, "rolled back")
    assert "interrupted" in undone["message"]
    assert current(state) == f"generations/{first.folder}"
    assert not (root / QUADLET / "api.container").exists()
    assert not (state / "pending.json").exists()


def test_generation_built_for_another_state_dir_is_a_warning_in_files_only_mode(
    state: Path, root: Path, tmp_path: Path
) -> None:
    pushed(web_stack(1, tmp_path / "elsewhere"), state, root)

    r = switcher("activate", state, root, "--generation", "1")

    assert r.rc == 0, r
    assert "state_dir" in r.data["warnings"][0]
