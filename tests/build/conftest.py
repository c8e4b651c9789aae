"""Fixtures for build-side tests: a throwaway project with a copy of the shipped stacks."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Project:
    root: Path

    @property
    def stacks(self) -> Path:
        return self.root / "stacks"

    @property
    def bundles(self) -> Path:
        return self.root / "bundles"

    def run(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run the real `bundle` command in this project, as a user would."""
        base = {"PATH": "/usr/bin:/bin", "NO_COLOR": "1", "HOME": str(self.root)}
        return subprocess.run(
            [sys.executable, "-m", "builder.cli", *args],
            cwd=self.root,
            capture_output=True,
            text=True,
            env={**base, **(env or {})},
            check=False,
        )

    def write(self, rel: str, text: str) -> Path:
        path = self.stacks / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def edit(self, rel: str, old: str, new: str) -> None:
        path = self.stacks / rel
        text = path.read_text()
        assert old in text, f"{old!r} not in {rel}"
        path.write_text(text.replace(old, new, 1))


def make_project(root: Path) -> Project:
    root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(REPO / "stacks", root / "stacks")
    return Project(root)


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return make_project(tmp_path / "project")


@pytest.fixture
def empty_project(tmp_path: Path) -> Project:
    root = tmp_path / "empty"
    (root / "stacks" / "templates").mkdir(parents=True)
    return Project(root)


def quadlet_dryrun(
    quadlet_bin: Path, units: Path, user: bool = False
) -> subprocess.CompletedProcess[str]:
    """podman's own quadlet generator, in dry-run mode, over a folder of unit files; `user`:
    as the generator of a user's systemd (rootless units)."""
    return subprocess.run(
        [str(quadlet_bin), *(["-user"] if user else []), "-dryrun"],
        env={**os.environ, "QUADLET_UNIT_DIRS": str(units)},
        capture_output=True,
        text=True,
        check=False,
    )


def small_stack(name: str, *web: str) -> str:
    """The stack of host `name` (at NAME.example.org) with one nginx container, `web`, and the
    lines `web` added to it."""
    return (
        f'[host]\nname = "{name}"\naddress = "{name}.example.org"\n\n'
        '[containers.web]\nimage = "docker.io/library/nginx"\nversion = "1.27.3"\n'
    ) + "".join(f"{line}\n" for line in web)
