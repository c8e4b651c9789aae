"""The archive's tar stream is the one Python's tarfile writes for the same files, byte for byte."""

from __future__ import annotations

import io
import tarfile

from hypothesis import given, settings
from hypothesis import strategies as st

from builder.bundle import tarformat

segment = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/\0"),
    min_size=1,
    max_size=40,
)
path = st.lists(segment, min_size=1, max_size=6).map("/".join)
member = st.tuples(path, st.binary(max_size=2000), st.sampled_from([0o644, 0o755, 0o600, 0o4755]))


def by_tarfile(files: list[tuple[str, bytes, int]]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, data, mode in files:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = mode
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    return raw.getvalue()


@settings(max_examples=300, deadline=None)
@given(st.lists(member, max_size=8))
def test_the_stream_is_tarfiles_byte_for_byte(files: list[tuple[str, bytes, int]]) -> None:
    assert tarformat.stream(files) == by_tarfile(files)


def test_long_names_and_exact_blocks_read_back_with_tarfile() -> None:
    files = [
        ("1-abc/" + "d" * 150 + "/config.yml", b"x" * 512, 0o644),  # a GNU long name
        ("1-abc/empty", b"", 0o600),
        ("1-abc/scripts/run.sh", b"#!/bin/sh\n", 0o755),
    ]
    data = tarformat.stream(files)
    assert data == by_tarfile(files)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        got = [(m.name, tar.extractfile(m).read(), m.mode) for m in tar.getmembers()]  # type: ignore[union-attr]
    assert got == files
