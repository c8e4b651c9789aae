"""`bundle generations` reads one index beside the generations, not every manifest, and says
exactly what it said when it read them: the index follows builds and removals, and is rebuilt
when it is deleted, damaged or out of step with the folders (one removed or added by hand)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from builder.bundle import index
from builder.bundle.store import Store
from tests.build.conftest import Project

STACK = """\
[host]
name = "web1"
address = "web1.example.org"
{extra}
[containers.web]
image = "docker.io/library/nginx"
version = "1.27.3"
"""

WORKER = """
[containers.worker]
image = "docker.io/library/busybox"
version = "1.36.1"
"""


def listing(project: Project) -> tuple[str, str]:
    text = project.run("generations", "web1")
    as_json = project.run("generations", "web1", "--json")
    assert text.returncode == as_json.returncode == 0, text.stderr + as_json.stderr
    return text.stdout, as_json.stdout


def index_of(project: Project) -> dict[str, object]:
    data: dict[str, object] = json.loads((project.bundles / "web1" / index.INDEX_NAME).read_text())
    return data


def test_the_index_follows_builds_and_is_rebuilt_when_deleted_damaged_or_stale(
    empty_project: Project,
) -> None:
    p = empty_project
    for extra in ("", WORKER, WORKER.replace("1.36.1", "1.37.0")):
        p.write("web1.toml", STACK.format(extra=extra))
        assert p.run("build", "web1").returncode == 0
    folder = p.bundles / "web1"
    names = sorted(x.name for x in folder.iterdir() if x.is_dir() and x.name[0].isdigit())
    assert len(names) == 3
    # each build recorded its generation: the units of every one, without reading them again
    assert index_of(p) == {"format": 1, "units": dict(zip(names, [1, 2, 2], strict=True))}
    before = listing(p)
    assert "    3  " in before[0] and "(latest)" in before[0]

    # deleted: rebuilt from the manifests, the same listing
    (folder / index.INDEX_NAME).unlink()
    assert listing(p) == before
    assert index_of(p)["units"] == dict(zip(names, [1, 2, 2], strict=True))

    # damaged: the same
    (folder / index.INDEX_NAME).write_text("{not json")
    assert listing(p) == before

    # a stale entry is never believed for a folder that exists: the listing stays the truth
    (folder / index.INDEX_NAME).write_text(json.dumps({"format": 1, "units": {"9-0": 5}}))
    assert listing(p) == before

    # a generation folder removed by hand: gone from the list and from the index
    shutil.rmtree(folder / names[1])
    (folder / f"{names[1]}.tar.zst").unlink()
    after = listing(p)
    assert json.loads(after[1]) == [r for r in json.loads(before[1]) if r["generation"] != 2]
    assert set(index_of(p)["units"]) == {names[0], names[2]}  # type: ignore[arg-type]

    # one added by hand (copied back): listed again, its units read from its manifest
    shutil.copytree(folder / names[2], folder / names[1])
    listed = json.loads(listing(p)[1])
    assert [(r["generation"], r["units"]) for r in listed] == [(1, 1), (2, 2), (3, 2)]


def test_the_listing_is_the_same_with_and_without_the_index(empty_project: Project) -> None:
    p = empty_project
    p.write("web1.toml", STACK.format(extra=""))
    assert p.run("build", "web1").returncode == 0
    p.write("web1.toml", STACK.format(extra=WORKER))
    assert p.run("build", "web1").returncode == 0
    with_index = listing(p)
    # read as before the index existed: every manifest, counted
    store = Store(p.bundles, "web1")
    units = [len(g.manifest()["units"]) for g in store.generations()]
    assert [r["units"] for r in json.loads(with_index[1])] == units == [1, 2]
    (p.bundles / "web1" / index.INDEX_NAME).unlink()
    assert listing(p) == with_index


def test_an_index_write_is_one_rename(tmp_path: Path) -> None:
    index.write(tmp_path, {"1-aaaaaaaaaaaa": 3})
    assert index.read(tmp_path) == {"1-aaaaaaaaaaaa": 3}
    assert sorted(x.name for x in tmp_path.iterdir()) == [index.INDEX_NAME]  # no leftover part
    # what is not an index reads as none (and is then rebuilt), never as wrong counts
    for junk in ('{"format": 2, "units": {}}', '{"format": 1, "units": {"x": -1}}', "[]", ""):
        (tmp_path / index.INDEX_NAME).write_text(junk)
        assert index.read(tmp_path) == {}


def test_removing_a_generation_drops_it_from_the_index(empty_project: Project) -> None:
    p = empty_project
    for extra in ("", WORKER):
        p.write("web1.toml", STACK.format(extra=extra))
        assert p.run("build", "web1").returncode == 0
    store = Store(p.bundles, "web1")
    first, second = store.generations()
    store.remove(first)  # as `bundle gc` removes the local ones
    assert index_of(p)["units"] == {second.name: 2}
    rows = json.loads(listing(p)[1])
    assert [(r["generation"], r["units"], r["latest"]) for r in rows] == [(2, 2, True)]
