"""Fixtures for the switcher's tests: a state folder and a ROOT folder standing in for a server,
and the stand-in systemctl/podman/quadlet (fake_tools.py) the managed-services path runs against.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from .switcherkit import Bundle, Result, U, make_bundle, switcher

FAKE_TOOLS = Path(__file__).with_name("fake_tools.py")
Run = Callable[..., Result]


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "root"
    path.mkdir()
    return path


def web_stack(
    generation: int,
    state: Path,
    index: bytes = b"hello\n",
    switcher_patch: dict[str, bytes] | None = None,
    extra: dict[str, U] | None = None,
) -> Bundle:
    """A small stack: a web container with a volume and a config file, a backup timer."""
    units = {
        "web.container": U(
            "[Container]\nImage=docker.io/library/nginx:1.27.3\nVolume=web-data.volume:/data\n"
            f"Volume={state}/current/files/web/index.html:/usr/share/nginx/html/index.html:ro\n"
            "[Install]\nWantedBy=multi-user.target\n",
            requires=("web-data.volume",),
            image="docker.io/library/nginx:1.27.3",
            refs=("files/web/index.html",),
        ),
        "web-data.volume": U("[Volume]\n"),
        "backup.service": U(
            f"[Service]\nType=oneshot\nExecStart={state}/current/scripts/backup.sh\n",
            enable=False,
            refs=("scripts/backup.sh",),
        ),
        "backup.timer": U(
            "[Timer]\nOnCalendar=daily\n[Install]\nWantedBy=timers.target\n",
            requires=("backup.service",),
        ),
        **(extra or {}),
    }
    files: dict[str, bytes | tuple[bytes, int]] = {
        "files/web/index.html": index,
        "scripts/backup.sh": (b"#!/bin/sh\necho backup\n", 0o755),
    }
    return make_bundle(
        generation,
        state,
        units,
        files,
        parent=generation - 1 or None,
        switcher_patch=switcher_patch,
    )


@pytest.fixture
def fake(tmp_path: Path, state: Path, root: Path) -> dict[str, str]:
    """The environment that puts the stand-in tools first on PATH, with their knobs."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("systemctl", "podman", "quadlet"):
        (bin_dir / tool).write_text(f"#!{sys.executable}\nexec(open({str(FAKE_TOOLS)!r}).read())\n")
        (bin_dir / tool).chmod(0o755)
    return {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "FAKE_STATE": str(tmp_path / "fake.json"),
        "FAKE_ROOT": str(root),
        "BUNDLE_QUADLET": str(bin_dir / "quadlet"),
    }


@pytest.fixture
def run(fake: dict[str, str], state: Path, root: Path) -> Run:
    """The switcher on the managed-services path, against the stand-in tools."""

    def run(command: str, *args: str, env: dict[str, str] | None = None) -> Result:
        return switcher(
            command, state, root, *args, "--services", "systemd", env={**fake, **(env or {})}
        )

    return run


def raw_calls(fake: dict[str, str]) -> list[str]:
    """Every call the stand-in tools got, in order."""
    return Path(fake["FAKE_STATE"]).with_suffix(".log").read_text().splitlines()


def calls(fake: dict[str, str], since: int = 0) -> list[str]:
    """The calls from the `since`-th on, without the read-only questions."""
    return [
        ln
        for ln in raw_calls(fake)[since:]
        if not ln.startswith(("systemctl show", "systemctl is-system", "systemctl reset-failed"))
    ]


def n_calls(fake: dict[str, str]) -> int:
    log = Path(fake["FAKE_STATE"]).with_suffix(".log")
    return len(log.read_text().splitlines()) if log.exists() else 0


def services(fake: dict[str, str]) -> dict[str, list[str]]:
    """The stand-ins' state: loaded, active, failed, enabled units, images, networks."""
    return json.loads(Path(fake["FAKE_STATE"]).read_text())
