"""`bundle init`: a new project that builds at once and whose units podman accepts."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.build.conftest import Project, quadlet_dryrun


def test_init_scaffolds_a_project_that_builds(tmp_path: Path, quadlet_bin: Path) -> None:
    runner = Project(tmp_path)
    result = runner.run("init", "infra")
    assert result.returncode == 0, result.stderr
    p = Project(tmp_path / "infra")
    assert (p.stacks / "web1.toml").read_text().startswith("# A host's stack")
    built = p.run("build", "web1", "web1-staging")
    assert built.returncode == 0, built.stderr
    staging = next((p.bundles / "web1-staging").glob("1-*[0-9a-f]"))
    assert (
        "Hello from web1-staging (staging.example.org)"
        in (staging / "files/site/index.html").read_text()
    )
    assert not (staging / "units/systemd/backup.timer").exists()
    prod = next((p.bundles / "web1").glob("1-*[0-9a-f]"))
    # the guide's first deploy shows the site at http://SERVER:8080/
    assert "PublishPort=8080:80" in (prod / "units/quadlet/site.container").read_text()
    units = tmp_path / "units"
    shutil.copytree(prod / "units/quadlet", units)
    dry = quadlet_dryrun(quadlet_bin, units)
    assert dry.returncode == 0, dry.stderr
    assert "---site.service---" in dry.stdout

    again = runner.run("init", "infra")
    assert again.returncode == 2
    assert "already exists" in again.stderr
