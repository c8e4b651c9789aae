"""What the switcher prints: JSON on stdout, one line on stderr."""

from __future__ import annotations

import json
import sys
from typing import Any

PROGRAM = "activate"


def emit(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def one_line(message: str) -> str:
    """Keep the promise of one line even when a tool's message spans several."""
    return " | ".join(part.strip() for part in message.splitlines() if part.strip())


def error(message: str) -> None:
    sys.stderr.write(f"{PROGRAM}: {one_line(message)}\n")
    sys.stderr.flush()
