"""Is a host's latest generation built from exactly today's tree? Standard library only.

A build first hashes everything it reads (the stacks folder, the builder and the switcher) and
compares that with what the last build recorded in `bundles/HOST/.inputs`. When they match, the
answer is the latest generation as it is, and `bundle build` prints it without loading the
model, the renderer or the archive writer (docs/architecture.md, "Start-up").
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import NamedTuple

import activate
from builder.bundle.listing import Built, generation_dirs

FINGERPRINT_FILE = ".inputs"


class Current(NamedTuple):
    """The latest generation, up to date with the tree, and its whole bundle hash."""

    generation: Built
    bundle_hash: str


def switcher_dir() -> Path:
    return Path(activate.__file__).parent


def input_fingerprint(stacks_dir: Path, host: str) -> str:
    """Hash of everything a build reads, so an unchanged tree skips the build entirely."""
    h = hashlib.sha256(host.encode() + b"\0")
    code = Path(__file__).resolve().parents[1]  # the whole builder package
    sources = [
        *(("stacks", p, stacks_dir) for p in stacks_dir.rglob("*")),
        *(("builder", p, code) for p in code.rglob("*.py")),
        *(("activate", p, switcher_dir()) for p in switcher_dir().rglob("*.py")),
    ]
    for label, path, base in sorted(sources, key=lambda s: (s[0], str(s[1]))):
        if path.is_file() and "__pycache__" not in path.parts and not path.name.startswith("."):
            h.update(f"{label}/{path.relative_to(base).as_posix()}\0".encode())
            h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def current(stacks_dir: Path, bundles_dir: Path, host: str, fingerprint: str) -> Current | None:
    """The latest generation when the last build recorded `fingerprint` for it, else None."""
    folder = bundles_dir / host
    gens = generation_dirs(folder)
    marker = folder / FINGERPRINT_FILE
    if not gens or not marker.is_file():
        return None
    latest = gens[-1]
    seen = marker.read_text().split()
    if len(seen) == 3 and seen[:2] == [fingerprint, latest.path.name]:
        return Current(latest, seen[2])
    return None
