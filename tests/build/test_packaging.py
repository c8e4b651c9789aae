"""The distribution installs as a user gets it (not editable): both command names, the switcher
and the test server's script inside, and a build works far from this checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.build.conftest import REPO


def test_wheel_installs_both_commands_and_builds(tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(
        REPO,
        src,
        ignore=shutil.ignore_patterns(
            ".venv", "bundles", ".git", "*.egg-info", "__pycache__", "build", "tests"
        ),
    )
    site = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(site),
            str(src),
        ],
        check=True,
        capture_output=True,
    )
    assert (site / "activate/__main__.py").is_file()
    assert (site / "builder/testserver/nspawn-target.sh").is_file()
    env = {**os.environ, "PYTHONPATH": str(site), "NO_COLOR": "1"}
    for name in ("bundle", "bundlectl"):
        help_text = subprocess.run(
            [str(site / "bin" / name), "--help"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert "bundle build vps1" in help_text
    project = tmp_path / "elsewhere"
    subprocess.run(
        [str(site / "bin/bundle"), "init", str(project)], env=env, check=True, capture_output=True
    )
    built = subprocess.run(
        [str(site / "bin/bundlectl"), "build", "web1"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    gen = next((project / "bundles/web1").glob("1-*[0-9a-f]"))
    assert (gen / "activate/__main__.py").read_bytes() == (
        REPO / "activate/__main__.py"
    ).read_bytes()
