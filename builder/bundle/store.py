"""The local generation store: bundles/HOST/<N>-<hash12>/ plus its archive, created atomically."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs

from activate import strict_json
from activate.errors import BadInput
from activate.manifest import MANIFEST_NAME, Manifest, parse_manifest
from builder.base.errors import InputError
from builder.bundle import index
from builder.bundle.listing import BUILD_LOG, build_times, generation_dirs


@attrs.frozen
class Generation:
    host: str
    number: int
    hash12: str
    path: Path

    @property
    def name(self) -> str:
        return f"{self.number}-{self.hash12}"

    @property
    def archive(self) -> Path:
        return self.path.with_name(self.name + ".tar.zst")

    def manifest(self) -> dict[str, Any]:
        """The manifest's JSON as it is written, unchecked (see `load_manifest`)."""
        path = self.path / MANIFEST_NAME
        try:
            return strict_json.loads(path.read_bytes(), str(path), "build it again")
        except strict_json.JsonRefused as exc:
            raise InputError(exc.message) from None

    def load_manifest(self) -> Manifest:
        """The manifest parsed and checked as the switcher does it."""
        path = self.path / MANIFEST_NAME
        try:
            return parse_manifest(path.read_bytes(), str(path))
        except BadInput as exc:
            raise InputError(exc.message) from None

    def read(self, rel: str) -> bytes:
        return (self.path / rel).read_bytes()


class Store:
    def __init__(self, bundles_dir: Path, host: str) -> None:
        self.host = host
        self.dir = bundles_dir / host

    def generations(self) -> list[Generation]:
        return [Generation(self.host, *built) for built in generation_dirs(self.dir)]

    def latest(self) -> Generation | None:
        gens = self.generations()
        return gens[-1] if gens else None

    def get(self, number: int) -> Generation:
        for gen in self.generations():
            if gen.number == number:
                return gen
        have = ", ".join(str(g.number) for g in self.generations()) or "none"
        raise InputError(
            f"{self.host}: generation {number} is not built (built: {have}); run `bundle build {self.host}`"
        )

    def units(self, gens: list[Generation]) -> dict[str, int]:
        """Units per generation name, from the index beside them (kept in step with `gens`)."""
        by_name = {g.name: g for g in gens}
        if not gens:
            return {}
        return index.in_step(self.dir, by_name, lambda name: len(by_name[name].manifest()["units"]))

    def build_times(self) -> dict[str, str]:
        return build_times(self.dir)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def add(
        self, number: int, hash12: str, files: dict[str, tuple[bytes, int]], archive_writer: Any
    ) -> Generation:
        """Write a generation: everything goes into a temporary folder, then one rename."""
        gen = Generation(self.host, number, hash12, self.dir / f"{number}-{hash12}")
        for stale in self.dir.glob(".tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=self.dir))
        try:
            root = tmp / gen.name
            archive_tmp = tmp / (gen.name + ".tar.zst")
            # the archive is compressed (zstd lets go of the GIL) while the files are written
            with ThreadPoolExecutor(max_workers=1) as pool:
                archived = pool.submit(archive_writer, archive_tmp)
                _write_files(root, files)
                archived.result()
            # the archive lands first: a generation folder only exists with its archive beside it
            os.replace(archive_tmp, gen.archive)
            os.replace(root, gen.path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        present = [g.name for g in self.generations()]
        # the manifest is the one just written from this build's own bytes: no strict re-check
        units = len(json.loads(files[MANIFEST_NAME][0])["units"])
        index.update(self.dir, present, {gen.name: units})
        with open(self.dir / BUILD_LOG, "a") as log:
            built_at = datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
            log.write(json.dumps({"generation": gen.name, "built_at": built_at}) + "\n")
        return gen

    def remove(self, gen: Generation) -> None:
        # the folder goes first so a half-removed generation is never listed
        trash = self.dir / f".tmp-rm-{gen.name}"
        os.replace(gen.path, trash)
        gen.archive.unlink(missing_ok=True)
        shutil.rmtree(trash, ignore_errors=True)
        index.update(self.dir, [g.name for g in self.generations()])


def _write_files(root: Path, files: dict[str, tuple[bytes, int]]) -> None:
    made: set[Path] = set()  # each folder is created once, not once per file in it
    for rel, (data, mode) in files.items():
        dest = root / rel
        if dest.parent not in made:
            dest.parent.mkdir(parents=True, exist_ok=True)
            made.add(dest.parent)
        dest.write_bytes(data)
        dest.chmod(mode)
