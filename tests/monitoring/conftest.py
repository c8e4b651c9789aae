"""Fixtures for the monitoring and WireGuard tests: the shipped stacks, built as a user would."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.build.conftest import Project, make_project


def build(project: Project, host: str) -> Path:
    """Build a host of the project; the generation's folder."""
    result = project.run("build", host, "--json")
    assert result.returncode == 0, result.stderr
    return Path(json.loads(result.stdout)["path"])


def tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/bin:/usr/sbin:/bin")
    if path is None:
        pytest.fail(f"{name} is not installed (.ci/run installs it)", pytrace=False)
    return path


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return make_project(tmp_path / "project")
