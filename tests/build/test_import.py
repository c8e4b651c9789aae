"""`bundle import`: a compose file becomes a stack that checks, with a report of what did not translate."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.build.conftest import REPO, Project, quadlet_dryrun

COMPOSE = REPO / "tests/build/data/compose-nextcloud.yml"


def test_import_compose_file(empty_project: Project, tmp_path: Path, quadlet_bin: Path) -> None:
    p = empty_project
    result = p.run("import", str(COMPOSE), "--host", "cloud1")
    assert result.returncode == 0, result.stderr
    report = result.stdout
    assert "wrote " in report and "stacks/cloud1.toml" in report
    for expected in (
        "services.db.env_file: not translated",
        "services.app.volumes: relative bind mount './config:/var/www/html/config' not translated",
        "services.cron.image: 'nextcloud:latest' is not pinned; set version to a real tag",
        "services.cron.build: not translated",
    ):
        assert expected in report, report
    text = (p.stacks / "cloud1.toml").read_text()
    assert 'image = "docker.io/library/nextcloud"' in text and 'version = "29.0.1-apache"' in text
    assert 'ports = ["127.0.0.1:8081:80", "8443:443"]' in text
    assert 'depends_on = ["db", "redis"]' in text
    assert "[volumes.nextcloud]" in text and "[networks.front]" in text
    assert 'entrypoint = "/cron.sh"' in text

    # the unpinned image is refused until a version is set; then it builds and podman accepts it
    check = p.run("check", "cloud1")
    assert check.returncode == 2 and "containers.cron.version" in check.stderr
    fixed = text.replace(
        '[containers.cron]\nimage = "docker.io/library/nextcloud"',
        '[containers.cron]\nimage = "docker.io/library/nextcloud"\nversion = "29.0.1-apache"',
    )
    (p.stacks / "cloud1.toml").write_text(fixed)
    built = p.run("build", "cloud1")
    assert built.returncode == 0, built.stderr
    gen = next((p.bundles / "cloud1").glob("1-*[0-9a-f]"))
    units = tmp_path / "units"
    shutil.copytree(gen / "units/quadlet", units)
    dry = quadlet_dryrun(quadlet_bin, units)
    assert dry.returncode == 0, dry.stderr
    assert "--health-cmd" in dry.stdout and "curl -f http://localhost/status.php" in dry.stdout

    again = p.run("import", str(COMPOSE), "--host", "cloud1")
    assert again.returncode == 2 and "already exists" in again.stderr


def test_import_refuses_what_is_not_compose(empty_project: Project, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("services: [1, 2\n")
    result = empty_project.run("import", str(bad), "--host", "x1")
    assert (
        result.returncode == 2
        and result.stderr.startswith(f"error: {bad}:")
        and "not valid YAML" in result.stderr
    )
    bad.write_text("just: text\n")
    result = empty_project.run("import", str(bad), "--host", "x1")
    assert result.returncode == 2 and "no `services:` table" in result.stderr
