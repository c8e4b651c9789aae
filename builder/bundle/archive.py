"""Reproducible .tar.zst archives: sorted entries, mtime 0, uid/gid 0, fixed compression level.

The tar stream is written by tarformat.py (the bytes tarfile writes); reading uses tarfile."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import zstandard

from builder.bundle import tarformat

LEVEL = 10


def write_archive(dest: Path, files: dict[str, tuple[bytes, int]], top: str) -> int:
    """Write `files` (path -> (bytes, mode)) under folder `top`; return the archive size."""
    raw = tarformat.stream((f"{top}/{path}", *files[path]) for path in sorted(files))
    compressed = zstandard.ZstdCompressor(level=LEVEL, write_checksum=True).compress(raw)
    dest.write_bytes(compressed)
    return len(compressed)


def read_archive(path: Path) -> dict[str, bytes]:
    """Every regular file in an archive, by its path inside the top folder."""
    data = zstandard.ZstdDecompressor().decompress(path.read_bytes(), max_output_size=1 << 31)
    out: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        for member in tar.getmembers():
            if member.isfile():
                f = tar.extractfile(member)
                assert f is not None
                out[member.name.split("/", 1)[1]] = f.read()
    return out
