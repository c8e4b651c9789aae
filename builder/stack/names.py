"""Unit names: what a stack entry becomes on disk and in systemctl."""

from __future__ import annotations

import re

from activate.manifest_format import service_name

__all__ = ["NAME", "NAME_HINT", "TAG", "service_name", "unit_file"]

# \Z, not $: `$` lets a trailing newline through `.match`, which other modules call
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}\Z")
# an image tag, as the OCI distribution spec defines it
TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
NAME_HINT = "use 1-63 lower-case letters, digits, '-' or '_', starting with a letter or digit"


def unit_file(name: str, kind: str) -> str:
    return f"{name}.{kind}"
