"""The switcher installed under STATE/switchers/ is checked on every push and repaired.

A power cut during its install, or a person editing it, must not break every later push to
the server: the check hashes the installed files on the server and the push reinstalls a copy
that is not whole, saying so in one line.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from builder.deploy.remote import EMPTY_SHA256, switcher_damage
from tests.harness import Target
from tests.server.conftest import DeployProject, make_deploy_project

SWITCHERS = "/var/lib/bundle/switchers"


@pytest.fixture(scope="module")
def p(target: Target, registry: Any, tmp_path_factory: pytest.TempPathFactory) -> DeployProject:
    project = make_deploy_project(tmp_path_factory.mktemp("heal"), target)
    project.ok("switch", "web1")
    return project


def installed(p: DeployProject) -> str:
    """The folder of the switcher the latest generation carries."""
    gen = sorted(p.bundles.joinpath("web1").glob("[0-9]*-*/manifest.json"))[-1]
    return f"{SWITCHERS}/{json.loads(gen.read_text())['switcher']}"


def assert_whole(p: DeployProject, folder: str) -> None:
    """Every file of the installed switcher is byte for byte the builder's; nothing else."""
    import activate

    here = Path(activate.__file__).parent
    want = {
        f"activate/{f.relative_to(here)}": hashlib.sha256(f.read_bytes()).hexdigest()
        for f in here.rglob("*.py")
        if "__pycache__" not in f.parts
    }
    out = p.target.ssh(f"cd {folder} && find activate -type f | sort | xargs sha256sum").stdout
    have = {path: sha for sha, path in (line.split() for line in out.splitlines())}
    assert have == want
    leftovers = p.target.ssh(f"ls -a {SWITCHERS}").stdout.split()
    assert not [n for n in leftovers if ".tmp" in n or ".old" in n], leftovers


def repaired_line(stdout: str) -> str:
    lines = [ln for ln in stdout.splitlines() if ln.startswith("  repaired first: ")]
    assert len(lines) == 1, stdout
    return lines[0]


def test_an_empty_main_module_left_by_a_power_cut_is_reinstalled_by_the_next_switch(
    p: DeployProject,
) -> None:
    folder = installed(p)
    p.target.ssh(f": > {folder}/activate/__main__.py")
    p.edit("web1.toml", 'message = "first"', 'message = "second"')
    result = p.ok("switch", "web1")
    assert result.stdout.splitlines()[0] == "web1: switch 1 -> 2: ok", result.stdout
    line = repaired_line(result.stdout)
    assert f"the switcher in {folder} was damaged (activate/__main__.py is empty)" in line
    assert line.endswith("reinstalled it")
    assert_whole(p, folder)
    assert p.fetch(8080) == "second from web1\n"


def test_a_missing_file_is_put_back_by_the_next_push(p: DeployProject) -> None:
    folder = installed(p)
    p.target.ssh(f"rm {folder}/activate/health.py")
    result = p.ok("push", "web1")
    assert "(activate/health.py is missing)" in repaired_line(result.stdout)
    assert_whole(p, folder)


def test_one_changed_byte_and_a_stray_file_are_noticed(p: DeployProject) -> None:
    folder = installed(p)
    p.target.ssh(
        f"sed -i '1s/^./X/' {folder}/activate/store.py && touch {folder}/activate/notes.txt"
    )
    result = p.ok("push", "web1")
    line = repaired_line(result.stdout)
    assert "activate/store.py differs" in line and "activate/notes.txt does not belong" in line
    assert_whole(p, folder)
    again = p.ok("push", "web1")  # whole now: nothing to repair, nothing sent
    assert "repaired" not in again.stdout and "already on" in again.stdout


def test_a_temp_folder_of_an_install_cut_short_is_removed_and_the_install_done(
    p: DeployProject,
) -> None:
    folder = installed(p)
    # a power cut after the temp folder was written, before it was renamed into place
    p.target.ssh(f"mv {folder} {folder}.tmp4000001 && : > {folder}.tmp4000001/activate/lock.py")
    result = p.ok("switch", "web1", "--json")
    report = json.loads(result.stdout)
    note = report["push"]["switcher_repaired"]
    assert note.startswith("removed 1 temp folder of an install cut short"), note
    assert report["push"]["switcher_sent"] is True and report["result"] == "ok"
    assert_whole(p, folder)
    status = p.ok("status", "web1")
    assert "is active" in status.stdout.splitlines()[0]


def test_status_repairs_a_damaged_switcher_and_says_so_in_one_line(p: DeployProject) -> None:
    folder = installed(p)
    p.target.ssh(f": > {folder}/activate/status.py")
    result = p.ok("status", "web1")
    lines = result.stdout.splitlines()
    assert "is active" in lines[0], result.stdout
    assert lines[1] == (
        f"  repaired first: the switcher in {folder} was damaged (activate/status.py is empty); "
        "reinstalled it"
    ), result.stdout
    assert_whole(p, folder)
    again = p.ok("status", "web1")
    assert "repaired" not in again.stdout + again.stderr


def test_under_quiet_and_json_the_repair_line_goes_to_stderr(p: DeployProject) -> None:
    folder = installed(p)
    p.target.ssh(f"rm {folder}/activate/gc.py")
    quiet = p.ok("log", "web1", "--quiet")
    assert "repaired" not in quiet.stdout
    assert quiet.stderr.strip() == (
        f"repaired first: the switcher in {folder} was damaged (activate/gc.py is missing); "
        "reinstalled it"
    ), quiet.stderr
    assert "activate" in quiet.stdout  # the log itself is what was asked for: --quiet keeps it
    p.target.ssh(f": > {folder}/activate/gc.py")
    report = p.json("gc", "web1", "--keep", "5")  # stdout stays one JSON document
    assert "(activate/gc.py is empty)" in report["switcher_repaired"]
    assert_whole(p, folder)


def test_what_is_wrong_with_a_switcher_in_words() -> None:
    want = {"activate/a.py": "1" * 64, "activate/b.py": "2" * 64, "activate/c.py": "3" * 64}
    assert switcher_damage(want, dict(want)) is None
    found: dict[str, str | None] = {
        "activate/a.py": EMPTY_SHA256,
        "activate/b.py": None,
        "activate/x.py": "4" * 64,
    }
    assert switcher_damage(want, found) == (
        "activate/a.py is empty, activate/b.py is unreadable, activate/c.py is missing and 1 more"
    )
