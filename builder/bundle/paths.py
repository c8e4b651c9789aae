"""Where a project keeps its stacks and its built bundles."""

from __future__ import annotations

from pathlib import Path

import attrs


@attrs.frozen
class Paths:
    stacks_dir: Path
    bundles_dir: Path

    @property
    def templates_dir(self) -> Path:
        return self.stacks_dir / "templates"
