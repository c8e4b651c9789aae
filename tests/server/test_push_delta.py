"""Pushes on a real server: the switcher travels once, a change travels as a delta against a
generation the server has, and every fallback ends with the builder's manifest byte for byte.

Each test starts from a server without any bundle state (nothing here activates anything).
"""

from __future__ import annotations

import hashlib
import io
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

from builder.bundle.store import Store
from tests.server.conftest import DeployProject

REPO = Path(__file__).resolve().parents[2]
STATE = "/var/lib/bundle"
# the last commit whose switcher predates deltas (no activate/delta.py)
BEFORE_DELTAS = "af22653"


@pytest.fixture
def p(deploy_project: DeployProject) -> DeployProject:
    deploy_project.target.ssh(f"rm -rf {STATE}")
    return deploy_project


def server_tree(p: DeployProject, name: str) -> dict[str, str]:
    """sha256 of every file of a generation folder on the server."""
    out = p.target.ssh(
        f"cd {STATE}/generations/{name} && find . -type f -exec sha256sum {{}} +"
    ).stdout
    return {line.split()[1].removeprefix("./"): line.split()[0] for line in out.splitlines()}


def local_tree(p: DeployProject, number: int) -> dict[str, str]:
    gen = Store(p.bundles, "web1").get(number)
    files = gen.manifest()["files"]
    return {
        "manifest.json": hashlib.sha256(gen.read("manifest.json")).hexdigest(),
        **{path: entry["sha256"] for path, entry in files.items()},
    }


def same_on_server(p: DeployProject, number: int) -> str:
    name = Store(p.bundles, "web1").get(number).name
    assert server_tree(p, name) == local_tree(p, number)
    return name


def switcher_objects(p: DeployProject, number: int) -> int:
    files = Store(p.bundles, "web1").get(number).manifest()["files"]
    return len({e["sha256"] for path, e in files.items() if path.startswith("activate/")})


def change(p: DeployProject, text: str) -> None:
    (p.stacks / "templates/web/index.html.j2").write_text(text + " {{ host.name }}\n")


def test_first_push_sends_the_switcher_once_and_a_change_sends_a_delta(p: DeployProject) -> None:
    p.ok("build", "web1")
    first = p.json("push", "web1")
    assert first["switcher_sent"] and first["base"] is None
    # the switcher's files were installed to receive with; the stream does not carry them again
    assert first["objects_sent"] == first["objects_total"] - switcher_objects(p, 1)
    name1 = same_on_server(p, 1)

    change(p, "second")
    p.ok("build", "web1")
    second = p.json("push", "web1")
    assert second["base"] == name1 and second["objects_sent"] == 1
    # the base's name, the new page's hash, the delta (the page and its unit) and the page
    assert not second["switcher_sent"] and second["bytes_sent"] < 1024
    same_on_server(p, 2)

    again = p.json("push", "web1", "--generation", "2")
    assert again["already_present"] and again["bytes_sent"] == 0


def test_the_base_is_a_generation_the_server_has(p: DeployProject) -> None:
    p.ok("build", "web1")
    p.json("push", "web1")
    for text in ("built, never pushed", "third"):
        change(p, text)
        p.ok("build", "web1")
    third = p.json("push", "web1")  # its parent, 2, never reached the server
    assert third["base"] == Store(p.bundles, "web1").get(1).name
    assert third["objects_sent"] == 1
    same_on_server(p, 3)


def test_a_server_whose_copy_of_the_base_differs_gets_the_full_manifest(
    p: DeployProject,
) -> None:
    p.ok("build", "web1")
    p.json("push", "web1")
    name1 = Store(p.bundles, "web1").get(1).name
    # a key outside the bundle hash: the folder name still matches, the bytes do not
    p.target.ssh(
        f"cd {STATE}/generations/{name1} && python3 -c '"
        'import json; m = json.load(open("manifest.json")); m["built_at"] = "by hand"; '
        'open("manifest.json", "w").write(json.dumps(m, indent=2, sort_keys=True) + "\\n")\''
    )
    change(p, "second")
    p.ok("build", "web1")

    second = p.json("push", "web1")

    assert second["base"] is None and second["objects_sent"] == 1
    same_on_server(p, 2)


def test_a_base_whose_objects_are_gone_is_not_used(p: DeployProject) -> None:
    p.ok("build", "web1")
    p.json("push", "web1")
    gen1 = Store(p.bundles, "web1").get(1)
    page = gen1.manifest()["files"]["files/web/index.html"]["sha256"]
    p.target.ssh(f"rm {STATE}/objects/{page[:2]}/{page}")
    change(p, "second")
    p.ok("build", "web1")

    second = p.json("push", "web1")

    assert second["base"] is None and second["objects_sent"] == 1
    same_on_server(p, 2)


def run_old(p: DeployProject, tree: Path, *args: str) -> Any:
    p.env = {"PYTHONPATH": str(tree)}
    try:
        return p.json(*args)
    finally:
        p.env = {}


def test_an_older_switcher_and_its_generations_work_with_this_builder(
    p: DeployProject, tmp_path: Path
) -> None:
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", BEFORE_DELTAS, "builder", "activate"],
        capture_output=True,
        check=False,
    )
    assert archive.returncode == 0, (
        f"needs the repository's history ({BEFORE_DELTAS}); run the tests in a full clone: "
        f"{archive.stderr.decode(errors='replace').strip()}"
    )
    old = tmp_path / "old"
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(old, filter="data")
    assert run_old(p, old, "build", "web1")["generation"] == 1
    pushed = run_old(p, old, "push", "web1")
    assert "base" not in pushed and pushed["objects_sent"] == pushed["objects_total"]
    gen1 = Store(p.bundles, "web1").get(1)
    assert "activate/delta.py" not in gen1.manifest()["files"]

    # this builder: its own switcher is installed beside the old one, the old generation is
    # the base of the new one
    change(p, "second")
    p.ok("build", "web1")
    second = p.json("push", "web1")
    assert second["switcher_sent"] and second["base"] == gen1.name
    assert second["channels"] == 1  # its switcher serves the whole push in one session
    same_on_server(p, 2)

    # and an old generation is pushed the way its own switcher reads: the full manifest
    p.target.ssh(f"rm -rf {STATE}")
    again = p.json("push", "web1", "--generation", "1")
    assert again["base"] is None and again["objects_sent"] == again["objects_total"]
    # a switcher that predates sessions: check, install, `have`, `receive`, a process each
    assert again["channels"] == 4
    same_on_server(p, 1)
