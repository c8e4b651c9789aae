"""State-aware rollback on a real server: code rolls back, data does not, unless asked.

Two stateful containers run an "app" image whose version 2 migrates its data on start:
`web` keeps its data in a podman volume (snapshotted with `podman volume export`), `kv`
declares a dump/restore command pair (snapshotted with the dump command while it runs).
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.harness import Target
from tests.safety.conftest import STATE, current, history
from tests.server.conftest import DeployProject, make_deploy_project

START_1 = b"""\
[ -f /data/version ] || echo 1 > /data/version
exec httpd -f -p 8080 -h /data
"""
START_2 = b"""\
echo 2 > /data/version
echo migrated > /data/migrated
[ -f /data/kv.txt ] && echo +migrated >> /data/kv.txt
exec httpd -f -p 8080 -h /data
"""

STACK = """\
[host]
name = "web1"
address = "web1-test"
health_timeout = 10
health_settle = 1

[volumes.web-data]
[volumes.kv-data]

[containers.web]
image = "registry.test:5000/bundle/app"
version = "1.0.0"
command = ["sh", "/start.sh"]
ports = ["0.0.0.0:8080:8080"]
volumes = ["web-data:/data"]
stateful = true
checks = [{ http = "http://127.0.0.1:8080/version" }]

[containers.kv]
image = "registry.test:5000/bundle/app"
version = "1.0.0"
command = ["sh", "/start.sh"]
ports = ["0.0.0.0:8082:8080"]
volumes = ["kv-data:/data"]
stateful = true
dump = "cat /data/kv.txt"
restore = "cat > /data/kv.txt"
"""


@pytest.fixture(scope="module")
def p(target: Target, registry: Any, tmp_path_factory: pytest.TempPathFactory) -> DeployProject:
    registry.push_busybox("bundle/app", "1.0.0", {"start.sh": START_1})
    registry.push_busybox("bundle/app", "2.0.0", {"start.sh": START_2})
    project = make_deploy_project(tmp_path_factory.mktemp("snapshots"), target, STACK)
    project.ok("switch", "web1")
    target.ssh("podman exec web sh -c 'echo precious > /data/user.txt'")
    target.ssh("podman exec kv sh -c 'echo kv version 1 > /data/kv.txt'")
    return project


def set_version(p: DeployProject, version: str) -> None:
    stack = p.stacks / "web1.toml"
    stack.write_text(re.sub(r'version = "[0-9.]+"', f'version = "{version}"', stack.read_text()))


def data(p: DeployProject) -> dict[str, str]:
    out = p.target.ssh(
        "podman exec web sh -c 'cat /data/version; cat /data/migrated 2>/dev/null || echo -;"
        " cat /data/user.txt'; podman exec kv cat /data/kv.txt; podman exec web cat /etc/image-ref"
    ).stdout.splitlines()
    return {
        "version": out[0],
        "migrated": out[1],
        "user": out[2],
        "kv": " ".join(out[3:-1]),
        "image": out[-1],
    }


def test_image_change_keeps_the_data_first_and_rollback_says_so(p: DeployProject) -> None:
    before = data(p)
    assert before == {
        "version": "1",
        "migrated": "-",
        "user": "precious",
        "kv": "kv version 1",
        "image": "bundle/app:1.0.0",
    }
    first = current(p.target)

    set_version(p, "2.0.0")
    report = p.json("switch", "web1")
    assert report["result"] == "ok"
    kept = report["snapshot"]
    assert kept["from"] == first and kept["path"] == f"{STATE}/snapshots/{report['to']}"
    assert kept["units"]["web.container"]["volumes"] == {"web-data": "web-data.tar"}
    assert kept["units"]["web.container"]["image_from"].endswith("app:1.0.0")
    assert kept["units"]["kv.container"]["dump"] == "kv.container.dump"
    assert "kv version 1" in p.target.read_file(f"{kept['path']}/kv.container.dump")
    listing = p.target.ssh(f"tar tf {kept['path']}/web-data.tar").stdout.split()
    assert "version" in listing and "user.txt" in listing and "migrated" not in listing
    migrated = data(p)
    assert migrated["version"] == "2" and migrated["migrated"] == "migrated"
    assert migrated["kv"] == "kv version 1 +migrated"

    # code goes back, data stays migrated; the deploy says so and how to restore
    out = p.ok("rollback", "web1")
    assert out.stdout.startswith(f"web1: rollback {report['to']} -> {first}: ok")
    warning = next(
        ln for ln in out.stdout.splitlines() if "web.container" in ln and "warning" in ln
    )
    assert "NOT put back" in warning
    assert f"bundle rollback web1 --to {first} --restore-data" in warning
    after = data(p)
    assert after["image"] == "bundle/app:1.0.0"
    assert (
        after["version"] == "2" and after["migrated"] == "migrated"
    )  # nothing lost, nothing undone

    # ... until asked: the snapshot goes back under the old code
    restored = p.json("rollback", "web1", "--to", str(first), "--restore-data")
    assert {r["unit"] for r in restored["restored"]} == {"web.container", "kv.container"}
    assert current(p.target) == first
    assert data(p) == before
    assert p.fetch(8080, "/version") == "1\n"
    # the data it replaced is kept as well
    replaced = next(r for r in restored["restored"] if r["unit"] == "web.container")
    kept_tar = f"{replaced['replaced_data_kept_in']}/web-data.tar"
    assert "migrated" in p.target.ssh(f"tar tf {kept_tar}").stdout.split()
    last = history(p.target)[-1]
    assert last["action"] == "restore-data" and last["result"] == "ok"


def test_rollback_with_restore_data_in_one_go(p: DeployProject) -> None:
    first = current(p.target)
    set_version(p, "2.0.0")
    p.ok("switch", "web1")
    assert data(p)["migrated"] == "migrated"
    out = p.ok("rollback", "web1", "--restore-data")
    assert out.stdout.startswith("web1: rollback ")
    assert "data restored: web.container" in out.stdout
    assert "data restored: kv.container" in out.stdout
    assert current(p.target) == first
    assert data(p) == {
        "version": "1",
        "migrated": "-",
        "user": "precious",
        "kv": "kv version 1",
        "image": "bundle/app:1.0.0",
    }
    # the earlier snapshot of that generation was kept, not overwritten
    folders = p.target.ssh(f"ls {STATE}/snapshots").stdout.split()
    assert len([f for f in folders if f.startswith(folders[0].split(".")[0])]) == 2, folders


def test_restore_data_with_nothing_to_restore_is_refused(p: DeployProject) -> None:
    set_version(p, "1.0.0")
    p.ok("switch", "web1")  # same images as the current generation: no snapshot
    here = current(p.target)
    result = p.run("rollback", "web1", "--to", str(here), "--restore-data")
    assert result.returncode == 1, result.stdout + result.stderr
    (line,) = result.stderr.splitlines()
    assert f"no snapshot to put back into generation {here}" in line
    assert current(p.target) == here


def test_a_snapshot_that_fails_stops_the_switch(p: DeployProject) -> None:
    before, kept = current(p.target), data(p)
    p.edit("web1.toml", 'dump = "cat /data/kv.txt"', 'dump = "cat /data/missing.txt"')
    set_version(p, "2.0.0")
    try:
        result = p.run("switch", "web1")
    finally:
        p.edit("web1.toml", 'dump = "cat /data/missing.txt"', 'dump = "cat /data/kv.txt"')
        set_version(p, "1.0.0")
    assert result.returncode == 1, result.stdout + result.stderr
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"error: web1: rolled back to generation {before}: "), first
    assert "the dump command of kv failed" in first and "missing.txt" in first
    assert current(p.target) == before
    assert data(p) == kept  # old images, data untouched
    leftovers = p.target.ssh(f"ls -a {STATE}/snapshots").stdout.split()
    assert not [name for name in leftovers if name.endswith(".tmp")], leftovers


def test_gc_removes_the_snapshots_of_removed_generations(p: DeployProject) -> None:
    report = json.loads(p.ok("gc", "web1", "--keep", "1", "--json").stdout)
    kept = {g["generation"] for g in p.json("generations", "web1", "--remote")}
    folders = p.target.ssh(f"ls {STATE}/snapshots || true").stdout.split()
    assert all(int(f.split(".")[0]) in kept for f in folders), (report, kept, folders)
