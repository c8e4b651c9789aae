"""`[host] podman`: quadlet keys the server's podman lacks are refused at build time, naming the
key, the unit and the version that adds it; the table agrees with podman 5.4's real generator."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from builder.render.podman_keys import KEY_SINCE, KIND_SINCE, SECTION, unit_problems
from tests.build.conftest import Project, make_project

RELEASES = ["4.3", "4.4", "4.5", "4.6", "4.7", "4.8", "4.9"] + [f"5.{n}" for n in range(7)]
KIND = {section: kind for kind, section in SECTION.items()}
EVERY_KEY = sorted((s, k, v) for s, keys in KEY_SINCE.items() for k, v in keys.items())


@pytest.mark.parametrize(("section", "key", "since"), EVERY_KEY)
def test_each_key_is_refused_below_its_version_and_accepted_at_it(
    section: str, key: str, since: str
) -> None:
    kind = KIND[section]
    text = f"[Unit]\nDescription=x\n\n[{section}]\n{key}=x\n\n[Install]\nWantedBy=default.target\n"
    before = RELEASES[RELEASES.index(since) - 1]
    path = f"units/quadlet/web.{kind}"
    problems = [str(p) for p in unit_problems(path, kind, text, "vps1", before)]
    if RELEASES.index(before) < RELEASES.index(KIND_SINCE[kind]):
        assert problems == [
            f"{path}: .{kind} units need podman {KIND_SINCE[kind]}; vps1 has {before} ([host] podman)"
        ]
    else:
        assert problems == [
            f"{path}: {key}= needs podman {since}; vps1 has {before} ([host] podman)"
        ]
    assert unit_problems(path, kind, text, "vps1", since) == []


def test_a_key_no_podman_knows_is_refused_whatever_the_host_runs() -> None:
    text = "[Container]\nImage=x\nImgae=y\n"
    for podman in (None, "5.6"):
        assert [str(p) for p in unit_problems("u.container", "container", text, "h", podman)] == [
            "u.container: Imgae= is not a [Container] key of any podman up to 5.6: "
            "quadlet would skip the unit"
        ]
    # systemd's own sections are not quadlet's to judge
    assert unit_problems("u.container", "container", "[Service]\nNice=1\n", "h", "4.4") == []


def test_the_table_agrees_with_podman_5_4s_generator(quadlet_bin: Path, tmp_path: Path) -> None:
    """Keys the table puts after 5.4 are refused by the real 5.4 generator; keys at 5.4 work."""
    newer = {k for k, v in KEY_SINCE["Container"].items() if v in ("5.5", "5.6")}
    assert {"ReloadCmd", "ReloadSignal", "Memory"} <= newer
    samples = {"ReloadCmd": "/bin/true", "Memory": "1g", "StartWithPod": "true", "GroupAdd": "1"}
    for key, value in samples.items():
        (tmp_path / f"{key.lower()}.container").write_text(
            f"[Container]\nImage=registry.test:5000/x:1.0\n{key}={value}\n"
        )
    r = subprocess.run(
        [str(quadlet_bin), "-dryrun"],
        env={**os.environ, "QUADLET_UNIT_DIRS": str(tmp_path)},
        capture_output=True,
        text=True,
        check=False,
    )
    made = {line.strip("-") for line in r.stdout.splitlines() if line.startswith("---")}
    for key in samples:
        accepted = f"{key.lower()}.service" in made
        assert accepted == (key not in newer), (key, r.stderr)
        assert (f"unsupported key '{key}'" in r.stderr) == (key in newer)


def set_podman(project: Project, host: str, version: str) -> None:
    project.edit(f"{host}.toml", "[host]\n", f'[host]\npodman = "{version}"\n')


def test_the_shipped_stacks_pass_at_debians_podman(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p")
    for host in ("vps1", "vps2"):
        set_podman(project, host, "5.4")  # vps1-staging and vps1-rootless extend vps1
    for host in ("vps1", "vps2", "vps1-staging", "vps1-rootless"):
        r = project.run("check", host)
        assert r.returncode == 0, r.stderr


def test_an_older_podman_is_refused_with_the_key_unit_and_version(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p")
    set_podman(project, "vps1", "4.9")
    r = project.run("build", "vps1")
    assert r.returncode == 2
    lines = r.stderr.splitlines()
    assert (
        "error: units/quadlet/nextcloud.pod: .pod units need podman 5.0; vps1 has 4.9 ([host] podman)"
        in lines
    )
    assert (
        "error: units/quadlet/nextcloud-cron.container: Entrypoint= needs podman 5.0; "
        "vps1 has 4.9 ([host] podman)"
    ) in lines
    assert not (project.bundles / "vps1").exists() or not any((project.bundles / "vps1").iterdir())

    project.edit("vps1.toml", 'podman = "4.9"', 'podman = "five"')
    r = project.run("check", "vps1")
    assert r.returncode == 2
    assert 'host.podman: must be MAJOR.MINOR, like "5.4"' in r.stderr
    assert "stacks/vps1.toml:" in r.stderr
