"""docs/commands.md is what the CLI says today."""

from __future__ import annotations

from builder.reference import render
from tests.build.conftest import REPO


def test_command_reference_is_current() -> None:
    on_disk = (REPO / "docs/commands.md").read_text()
    assert on_disk == render(), (
        "docs/commands.md is stale: run .venv/bin/python -m builder.reference > docs/commands.md"
    )
    for command in ("build", "switch", "rollback", "status", "import", "completion"):
        assert f"## bundle {command}\n" in on_disk
