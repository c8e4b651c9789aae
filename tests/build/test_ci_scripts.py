"""The README's test commands: `.ci/run` as root (no sudo needed), and
`.ci/install-system-packages` alone for `bundle demo`. apt-get and the venv's tools are
stand-ins that record their arguments: a test must not install packages or reach a mirror."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.build.conftest import REPO

RECORDER = '#!/bin/sh\necho "$(basename "$0") $*" >> "$CALLS"\nexit "${EXIT_%s:-0}"\n'


def checkout(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A copy of .ci/ in a folder with a stand-in .venv, and a PATH whose apt-get records."""
    root = tmp_path / "checkout"
    shutil.copytree(REPO / ".ci", root / ".ci")
    (root / ".venv/bin").mkdir(parents=True)
    tools = tmp_path / "bin"
    tools.mkdir()
    for folder, name in (
        (tools, "apt-get"),
        (root / ".venv/bin", "python"),
        (root / ".venv/bin", "pip"),
        (root / ".venv/bin", "mypy"),
        (root / ".venv/bin", "pytest"),
        (root / ".venv/bin", "lint-imports"),
    ):
        (folder / name).write_text(RECORDER % name.replace("-", "_").upper())
        (folder / name).chmod(0o755)
    return root, tools, tmp_path / "calls"


def run(
    root: Path, tools: Path, calls: Path, script: str, **exits: str
) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": f"{tools}:/usr/bin:/bin",
        "CALLS": str(calls),
        **{f"EXIT_{k}": v for k, v in exits.items()},
    }
    return subprocess.run(
        ["bash", script], cwd=root, env=env, capture_output=True, text=True, check=False
    )


def test_ci_run_as_root_installs_the_packages_then_runs_the_suite(tmp_path: Path) -> None:
    assert os.geteuid() == 0, "the suite runs as root (docs/testing.md)"
    root, tools, calls = checkout(tmp_path)
    result = run(root, tools, calls, ".ci/run")
    assert result.returncode == 0, result.stderr
    lines = calls.read_text().splitlines()
    assert lines[0] == "apt-get update -qq"
    assert lines[1].startswith("apt-get install -y -qq --no-install-recommends systemd-container ")
    assert {"mmdebstrap", "openssh-server", "docker-registry", "caddy", "git"} <= set(
        lines[1].split()
    )
    assert lines[2:] == [
        "python -c import sys",
        "pip install -q -e .[test]",
        "mypy ",  # no arguments: the recorder still writes the space after the name
        "lint-imports ",  # the recorder writes "NAME ARGS"
        "pytest -q",
    ]

    # pytest collecting nothing (exit 5) is not a failure; a failing suite is
    calls.unlink()
    empty = run(root, tools, calls, ".ci/run", PYTEST="5")
    assert (empty.returncode, empty.stdout) == (0, "pytest collected no tests\n")
    calls.unlink()
    assert run(root, tools, calls, ".ci/run", PYTEST="1").returncode == 1
    calls.unlink()
    broken = run(root, tools, calls, ".ci/run", APT_GET="100")
    assert broken.returncode != 0 and "pytest" not in calls.read_text()
    calls.unlink()
    # a broken layer contract fails the run before the suite starts
    layered = run(root, tools, calls, ".ci/run", LINT_IMPORTS="1")
    assert layered.returncode != 0 and "pytest" not in calls.read_text()
    # a type error fails the run before the tests start
    calls.unlink()
    mistyped = run(root, tools, calls, ".ci/run", MYPY="1")
    assert mistyped.returncode == 1 and "pytest" not in calls.read_text()


def test_install_system_packages_alone_installs_the_same_list(tmp_path: Path) -> None:
    root, tools, calls = checkout(tmp_path)
    result = run(root, tools, calls, ".ci/install-system-packages")
    assert result.returncode == 0, result.stderr
    lines = calls.read_text().splitlines()
    assert lines[0] == "apt-get update -qq" and len(lines) == 2  # no venv, no tests
    assert "systemd-container" in lines[1].split() and "python3-venv" in lines[1].split()


@pytest.mark.parametrize("script", [".ci/install-system-packages", ".ci/run"])
def test_not_root_is_told_to_use_sudo(tmp_path: Path, script: str) -> None:
    root, tools, calls = checkout(tmp_path)
    tmp_path.chmod(0o755)
    calls.touch(mode=0o666)
    env = f"PATH={tools}:/usr/bin:/bin CALLS={calls}"
    result = subprocess.run(
        [
            "setpriv",
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "sh",
            "-c",
            f"{env} bash {script}",
        ],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.endswith(
        "install-system-packages: run it as root (sudo .ci/install-system-packages): it installs "
        "packages with apt-get\n"
    ), result.stderr
    assert calls.read_text() == ""
