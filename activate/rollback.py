"""rollback: activate an older generation with that generation's own switcher.

Without --to the target is the newest generation older than the current one that was once
active (from history) and is still on disk, so running rollback again walks further back.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from .errors import BadInput, Failed
from .store import Generation, Store, rollback_target

ACTION_ENV = "BUNDLE_ACTION"


def choose_target(store: Store, to: int | None) -> Generation:
    store.require_exists()
    if to is not None:
        return store.find(to)
    current = store.current()
    if current is None:
        raise BadInput("rollback: no generation is active, so there is nothing to go back from")
    existing = {g.number for g in store.generations()}
    n = rollback_target(store.history(), current.number, existing)
    if n is None:
        raise Failed(
            f"rollback: history shows no earlier generation than {current.number} that is still "
            "on this server; pick one with `rollback --to N` (see `generations`)"
        )
    return store.find(n)


def has_own_switcher(gen: Generation) -> bool:
    return (gen.path / "activate" / "__main__.py").is_file()


def run_own_switcher(gen: Generation, state: Path, root: Path, extra: list[str]) -> int:
    """Run `python3 -m activate activate` inside the generation; its output is ours."""
    argv = [
        sys.executable,
        "-B",  # never write __pycache__ into a read-only generation
        "-m",
        "activate",
        "activate",
        "--generation",
        str(gen.number),
        "--state",
        str(state),
        "--root",
        str(root),
        *extra,
    ]
    env = {**os.environ, ACTION_ENV: "rollback"}
    try:
        return subprocess.run(argv, cwd=gen.path, env=env, check=False).returncode
    except OSError as exc:
        raise Failed(f"rollback: cannot run the switcher of {gen.path} ({exc})") from None
