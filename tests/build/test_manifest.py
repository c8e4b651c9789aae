"""The manifest a build writes is the switcher's own type: it reads back to the same bytes."""

from __future__ import annotations

import json
from pathlib import Path

from activate.manifest import parse_manifest
from activate.manifest_format import dump
from builder.bundle.manifest import bundle_hash
from tests.build.conftest import Project

HOSTS = ("vps1", "vps1-rootless", "vps1-staging", "vps2")


def test_the_switcher_reads_every_built_manifest_back_to_the_same_bytes(project: Project) -> None:
    for host in HOSTS:
        result = project.run("build", host, "--json")
        assert result.returncode == 0, result.stderr
        info = json.loads(result.stdout)
        data = (Path(info["path"]) / "manifest.json").read_bytes()

        manifest = parse_manifest(data)

        assert dump(manifest) == data, host
        assert manifest.hash == info["hash"]
        assert manifest.folder_name == Path(info["path"]).name
        raw = json.loads(data)
        assert sorted(manifest.secrets) == sorted(raw.get("secrets", {}))
        assert sorted(manifest.rendered) == sorted(raw.get("rendered", {}))


def test_builder_and_switcher_leave_the_same_keys_out_of_the_hash(project: Project) -> None:
    info = json.loads(project.run("build", "vps1", "--json").stdout)
    raw = json.loads((Path(info["path"]) / "manifest.json").read_text())

    # a manifest from another writer may carry its build time; it is not part of what it is
    stamped = {**raw, "generation": 7, "parent": 6, "built_at": "2026-12-01T10:00:00Z"}

    assert bundle_hash(stamped) == info["hash"]
    assert parse_manifest(json.dumps(stamped).encode()).hash == info["hash"]
