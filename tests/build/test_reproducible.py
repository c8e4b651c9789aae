"""Same inputs, same bytes; a build that dies leaves no generation behind."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import tarfile
from pathlib import Path

import zstandard

from builder.bundle.archive import read_archive
from builder.bundle.manifest import bundle_hash
from tests.build.conftest import Project, make_project


def test_two_clones_give_byte_identical_archives(tmp_path: Path) -> None:
    a = make_project(tmp_path / "clone-a")
    b = make_project(tmp_path / "somewhere/else/clone-b")
    for p in (a, b):
        result = p.run("build", "vps1", "--json")
        assert result.returncode == 0, result.stderr
    info_a = json.loads(a.run("build", "vps1", "--json").stdout)
    info_b = json.loads(b.run("build", "vps1", "--json").stdout)
    assert info_a["hash"] == info_b["hash"]
    assert Path(info_a["archive"]).read_bytes() == Path(info_b["archive"]).read_bytes()
    os.utime(b.stacks / "vps1.toml", (0, 0))
    assert "up to date" in b.run("build", "vps1").stdout


def test_archive_holds_the_generation_exactly(project: Project) -> None:
    info = json.loads(project.run("build", "vps1", "--json").stdout)
    gen = Path(info["path"])
    members = read_archive(Path(info["archive"]))
    on_disk = {p.relative_to(gen).as_posix(): p.read_bytes() for p in gen.rglob("*") if p.is_file()}
    assert members == on_disk
    manifest = json.loads(members["manifest.json"])
    assert manifest["generation"] == 1 and manifest["parent"] is None
    assert set(manifest["files"]) == set(on_disk) - {"manifest.json"}
    raw = zstandard.ZstdDecompressor().decompress(
        Path(info["archive"]).read_bytes(), max_output_size=1 << 30
    )
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        names = tar.getnames()
        assert names == sorted(names)
        assert {(m.mtime, m.uid, m.gid) for m in tar.getmembers()} == {(0, 0, 0)}


def test_bundle_hash_ignores_generation_number(project: Project) -> None:
    info = json.loads(project.run("build", "vps1", "--json").stdout)
    manifest = json.loads((Path(info["path"]) / "manifest.json").read_text())
    assert bundle_hash(manifest) == info["hash"]
    assert bundle_hash({**manifest, "generation": 99, "parent": 98}) == info["hash"]
    assert Path(info["path"]).name == f"1-{info['hash'][:12]}"


def test_killed_build_leaves_no_generation(project: Project) -> None:
    # a build stopped while it writes (SIGKILL at the archive step) must leave nothing listed
    script = (
        "import os, signal, sys\n"
        "import builder.bundle.archive as a\n"
        "real = a.write_archive\n"
        "def dying(dest, files, top):\n"
        "    real(dest, files, top)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "a.write_archive = dying\n"
        "from builder.cli import main\n"
        "sys.exit(main(['build', 'vps1']))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=project.root, capture_output=True, check=False
    )
    assert proc.returncode == -signal.SIGKILL
    host_dir = project.bundles / "vps1"
    assert not list(host_dir.glob("[0-9]*")), list(host_dir.iterdir())
    listing = project.run("generations", "vps1")
    assert "no generations built yet" in listing.stdout
    again = project.run("build", "vps1")
    assert "built generation 1" in again.stdout
    assert not list(host_dir.glob(".tmp-*"))
