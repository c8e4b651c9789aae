"""Fixtures for the switcher's tests: a state folder and a ROOT folder standing in for a server."""

from __future__ import annotations

from pathlib import Path

import pytest

from .switcherkit import Bundle, U, make_bundle


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
