"""Every unit the shipped stacks produce passes podman's own quadlet generator and systemd-analyze."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.build.conftest import Project, quadlet_dryrun

HOSTS = ("vps1", "vps1-staging", "vps2")


def built(project: Project, host: str) -> Path:
    result = project.run("build", host, "--json")
    assert result.returncode == 0, result.stderr
    return Path(json.loads(result.stdout)["path"])


@pytest.mark.parametrize("host", HOSTS)
def test_quadlet_generator_accepts_every_unit(
    project: Project, quadlet_bin: Path, tmp_path: Path, host: str
) -> None:
    gen = built(project, host)
    units = tmp_path / "units"
    shutil.copytree(gen / "units/quadlet", units)
    result = quadlet_dryrun(quadlet_bin, units)
    assert result.returncode == 0, result.stderr
    problems = [
        line for line in result.stderr.splitlines() if "Loading source unit file" not in line
    ]
    assert problems == [], "\n".join(problems)
    manifest = json.loads((gen / "manifest.json").read_text())
    quadlet_units = [
        u
        for u in manifest["units"].values()
        if u["kind"] in ("container", "pod", "volume", "network")
    ]
    assert quadlet_units
    for unit in quadlet_units:
        assert f"---{unit['service']}---" in result.stdout, f"quadlet made no {unit['service']}"


def test_quadlet_generator_rejects_what_podman_cannot_run(
    quadlet_bin: Path, tmp_path: Path
) -> None:
    (tmp_path / "bad.container").write_text(
        "[Container]\nImage=docker.io/library/busybox:1\nPublishPorts=80\n"
    )
    result = quadlet_dryrun(quadlet_bin, tmp_path)
    assert result.returncode == 1
    assert "unsupported key 'PublishPorts'" in result.stderr


@pytest.mark.parametrize("host", ("vps1", "vps2"))
def test_systemd_analyze_verifies_scripts_and_timers(
    project: Project, tmp_path: Path, host: str
) -> None:
    # point the stack's state dir at a scratch folder so ExecStart paths exist on this machine
    state = tmp_path / "state"
    project.edit(f"{host}.toml", 'state_dir = "/var/lib/bundle"', f'state_dir = "{state}"')
    gen = built(project, host)
    state.mkdir()
    (state / "current").symlink_to(gen)
    units = sorted((gen / "units/systemd").iterdir())
    assert {u.suffix for u in units} == {".service", ".timer"}
    work = tmp_path / "verify"
    shutil.copytree(gen / "units/systemd", work)
    result = subprocess.run(
        ["systemd-analyze", "verify", *[f"./{u.name}" for u in units]],
        cwd=work,
        capture_output=True,
        text=True,
        check=False,
    )
    # systemd-analyze only warns (exit 0) on unknown keys: any output is a failure
    assert result.returncode == 0 and result.stderr == "" and result.stdout == "", result.stderr
    assert (
        f"ExecStart=/usr/bin/python3 -B {state}/current/scripts/backup.py run"
        in (gen / "units/systemd/backup.service").read_text()
    )
