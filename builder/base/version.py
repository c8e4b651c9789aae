"""The version `bundle --version` prints: the installed distribution's, else the checkout's."""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

DISTRIBUTION = "quadlet-bundle"
# a source checkout run without installing it (python -m builder.cli): pyproject.toml beside
PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def version(distribution: str = DISTRIBUTION, pyproject: Path = PYPROJECT) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        pass
    try:
        return f"{tomllib.loads(pyproject.read_text())['project']['version']} (source checkout)"
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return "unknown (not installed; pip install . to get one)"
