"""STATE/runs/RUN: how a detached activation and the processes waiting for it talk
(activate/detach.py): status.json (the phase), report.json (the final word) and the canary
that `confirm` removes."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

from . import durable, strict_json
from .errors import BadInput
from .protocol import Stage
from .store import Store

RUN_RE = re.compile(r"^[0-9]+-[0-9]+\Z")
POLL = 0.1


class Run:
    """STATE/runs/RUN: how an activation and the processes waiting for it talk."""

    def __init__(self, store: Store, run_id: str) -> None:
        if not RUN_RE.fullmatch(run_id):
            raise BadInput(f"--run {run_id!r}: expected GENERATION-NUMBER")
        self.id = run_id
        self.dir = store.root / "runs" / run_id

    @property
    def canary(self) -> Path:
        return self.dir / "canary"

    def _write(self, name: str, data: dict[str, Any]) -> None:
        durable.write_json(self.dir / name, data)

    def _read(self, name: str) -> dict[str, Any] | None:
        try:
            return strict_json.loads((self.dir / name).read_bytes(), name, "")
        except (FileNotFoundError, strict_json.JsonRefused):
            return None

    def status(self) -> dict[str, Any] | None:
        return self._read("status.json")

    def report(self) -> dict[str, Any] | None:
        return self._read("report.json")

    def phase(self, phase: Stage, **extra: Any) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self._write("status.json", {"phase": phase, "run": self.id, "pid": os.getpid(), **extra})

    def finish(self, report: dict[str, Any], exit_code: int, error: str | None = None) -> None:
        """The final word: written once, after history.jsonl."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self._write("report.json", {"report": report, "exit": exit_code, "error": error})
        self.phase(Stage.DONE, exit=exit_code)

    def await_confirmation(self, seconds: float, waiting: dict[str, Any]) -> bool:
        """Create the canary and wait for `confirm` to remove it; False when time runs out."""
        self.canary.write_text(f"remove to confirm; expires in {seconds:.0f} s\n")
        deadline = time.monotonic() + seconds
        self.phase(
            Stage.CONFIRM, confirm_by=time.time() + seconds, confirm_timeout=seconds, **waiting
        )
        while time.monotonic() < deadline:
            if not self.canary.exists():
                return True
            time.sleep(POLL)
        try:
            durable.rename(self.canary, self.canary.with_name("canary.expired"))
        except FileNotFoundError:
            return True  # confirmed at the last moment
        return False
