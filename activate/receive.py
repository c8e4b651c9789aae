"""receive: a gzip tar stream on stdin becomes a complete generation folder, or nothing.

The stream holds `manifest.json` first, then `objects/<sha256>` for the objects the server
lacks (ask with `have`). In place of `manifest.json` it may hold `manifest.delta.json`, the
manifest as its changes against a generation the server has (activate/delta.py); the full
manifest is rebuilt from it and checked before any object is read. Objects that are neither
stored nor in the stream are taken from the switcher's own folder when its files hash to them:
the deployer installed that switcher before the push, so its files do not travel twice. Every object is hashed while it is written to STATE/incoming/; nothing
is written anywhere else until the whole stream has been read and checked. A stream that is
refused (an entry that is not a plain file named as it should be, an object whose bytes do not
match its name, a stream that expands far beyond its compressed size) leaves nothing but the
staging folder, which is removed. A stream that is merely cut (connection lost, disk full)
keeps the objects that arrived whole and verified, so the next push sends only the rest. The
generation folder is assembled under STATE/incoming/, verified, fsynced and renamed into
STATE/generations/ in one step.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import hashlib
import os
import re
import tarfile
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO

from . import faults, strict_json
from .delta import BASE_RE, DELTA_NAME, parse_delta, rebuild
from .durable import fsync_dir
from .errors import BadInput, Failed, SwitcherError
from .manifest import MANIFEST_NAME, SHA256_RE, Manifest, parse_manifest
from .protocol import HaveReply, HaveRequest, ObjectsMissing, Received
from .store import OBJECT_MODE, Store, read_only_mode, remove_tree
from .words import plural

OBJECT_NAME_RE = re.compile(r"^objects/([0-9a-f]{64})\Z")
MANIFEST_LIMIT = 16 * 1024 * 1024
# Tar overhead per entry: a 512-byte header, padding, and room for a pax or GNU long-name header.
ENTRY_OVERHEAD = 4096
# End-of-archive blocks plus the padding up to tar's 10 KiB record size.
END_OVERHEAD = 20 * 1024
CHUNK = 1024 * 1024
# Past this many bytes, the stream may expand at most EXPANSION_RATIO times its compressed size:
# bundles hold config files and scripts (gzip makes them 3-10 times smaller); a file of zeros
# shrinks a thousandfold and is how a small stream fills a disk.
EXPANSION_FLOOR = 64 * 1024 * 1024
EXPANSION_RATIO = 200


class _Counted:
    """The compressed stream, counting the bytes gzip takes from it."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.count += len(data)
        return data


class _CappedReader:
    """Counts decompressed bytes and refuses to expand past `limit`, or past EXPANSION_RATIO
    times the compressed bytes read so far (a gzip bomb stops here, in the staging folder)."""

    def __init__(self, raw: BinaryIO, limit: int, compressed: _Counted) -> None:
        self.raw = raw
        self.limit = limit
        self.count = 0
        self.compressed = compressed

    def read(self, size: int = -1) -> bytes:
        allowed = self.limit - self.count + 1
        data = self.raw.read(allowed if size < 0 else min(size, allowed))
        self.count += len(data)
        if self.count > self.limit:
            raise BadInput(
                f"receive: the stream expands past {self.limit} bytes, more than the manifest "
                "declares; push again with the builder's own push"
            )
        if self.count > EXPANSION_FLOOR and self.count > EXPANSION_RATIO * self.compressed.count:
            raise BadInput(
                f"receive: the stream expands more than {EXPANSION_RATIO} times its compressed "
                f"size ({self.compressed.count} bytes became {self.count}); refusing it as a "
                "compression bomb"
            )
        return data


def _drain(src: IO[bytes], size: int, sink: IO[bytes] | None) -> str:
    """Copy exactly `size` bytes from src to sink (or nowhere); return their sha256."""
    digest = hashlib.sha256()
    left = size
    while left:
        chunk = src.read(min(CHUNK, left))
        if not chunk:
            raise Failed("receive: the stream ended in the middle of a file; push again")
        digest.update(chunk)
        if sink is not None:
            sink.write(chunk)
        left -= len(chunk)
    return digest.hexdigest()


@dataclass
class _Progress:
    manifest: Manifest | None = None
    manifest_bytes: bytes = b""
    objects_received: int = 0
    bytes_received: int = 0
    staged: list[str] = dataclasses.field(default_factory=list)  # verified, in staging


def _check_member(member: tarfile.TarInfo) -> None:
    name = member.name
    if member.type not in (tarfile.REGTYPE, tarfile.AREGTYPE):
        raise BadInput(
            f"receive: refusing tar entry {name!r}: only regular files are allowed "
            "(no links, folders or devices); push with the builder's own push"
        )
    if name not in (MANIFEST_NAME, DELTA_NAME) and not OBJECT_NAME_RE.fullmatch(name):
        raise BadInput(
            f"receive: refusing tar entry {name!r}: only manifest.json and objects/<sha256> "
            "are allowed (or manifest.delta.json in place of manifest.json); push with the "
            "builder's own push"
        )


def _read_manifest(
    member: tarfile.TarInfo, tar: tarfile.TarFile, store: Store, progress: _Progress
) -> None:
    if progress.manifest is not None:
        raise BadInput("receive: the stream holds a manifest twice")
    if member.size > MANIFEST_LIMIT:
        raise BadInput(f"receive: {member.name} is {member.size} bytes, over {MANIFEST_LIMIT}")
    src = tar.extractfile(member)
    assert src is not None  # regular file, checked above
    data = src.read()
    if len(data) != member.size:
        raise Failed(f"receive: the stream ended inside {member.name}; push again")
    if member.name == DELTA_NAME:
        data = _rebuilt(store, data)
    progress.manifest = parse_manifest(data, "receive: manifest.json")
    progress.manifest_bytes = data


def _rebuilt(store: Store, data: bytes) -> bytes:
    """The full manifest a delta describes, from this server's copy of its base."""
    delta = parse_delta(data)
    base = store.named(delta.base)
    if base is None:
        raise BadInput(
            f"receive: {DELTA_NAME}: base generation {delta.base} is not on this server; "
            "push the full manifest"
        )
    try:
        store.load_manifest(base)  # the base is what its folder name says
        raw = strict_json.loads((base.path / MANIFEST_NAME).read_bytes(), "manifest", "")
    except (SwitcherError, OSError, ValueError) as exc:
        detail = exc.message if isinstance(exc, SwitcherError) else str(exc)
        raise BadInput(
            f"receive: {DELTA_NAME}: base generation {delta.base} cannot be read ({detail}); "
            "push the full manifest"
        ) from None
    rebuilt = rebuild(raw, delta)
    if len(rebuilt) > MANIFEST_LIMIT:
        raise BadInput(f"receive: {DELTA_NAME} rebuilds a manifest over {MANIFEST_LIMIT} bytes")
    return rebuilt


def _read_object(
    member: tarfile.TarInfo,
    tar: tarfile.TarFile,
    store: Store,
    staging: Path,
    progress: _Progress,
    seen: set[str],
) -> None:
    manifest = progress.manifest
    if manifest is None:
        raise BadInput(
            f"receive: {member.name} arrived before manifest.json; the manifest must come first"
        )
    claimed = member.name.split("/", 1)[1]
    sizes = manifest.object_sizes()
    if claimed not in sizes:
        raise BadInput(f"receive: {member.name} is not a file of generation {manifest.generation}")
    if member.size != sizes[claimed]:
        raise BadInput(
            f"receive: {member.name} is {member.size} bytes, the manifest says {sizes[claimed]}"
        )
    if claimed in seen:
        raise BadInput(f"receive: {member.name} appears twice in the stream")
    seen.add(claimed)
    src = tar.extractfile(member)
    assert src is not None
    if store.has_object(claimed):
        _drain(src, member.size, None)  # already stored by an earlier, interrupted push
        return
    staged = staging / claimed
    with open(staged, "wb") as sink:
        actual = _drain(src, member.size, sink)
        sink.flush()
        os.fsync(sink.fileno())
    if actual != claimed:
        staged.unlink()
        raise BadInput(
            f"receive: {member.name} has sha256 {actual}, not the one its name claims; "
            "the bundle is corrupt, rebuild and push again"
        )
    progress.staged.append(claimed)
    progress.objects_received += 1
    progress.bytes_received += member.size
    faults.point("receive-after-object")


def _promote(store: Store, staging: Path, progress: _Progress) -> None:
    """Move the verified objects out of staging into STATE/objects/."""
    for sha in progress.staged:
        store.add_object(sha, staging / sha)
    progress.staged.clear()


def _keep_what_arrived(store: Store, staging: Path, progress: _Progress) -> None:
    """After a cut stream: keep the verified objects that can be kept, so the next push sends
    only the rest; one that cannot (the disk is full, staging on another file system) is sent
    again, and the cut is what gets reported."""
    for sha in progress.staged:
        with contextlib.suppress(OSError):
            store.add_object(sha, staging / sha)
    progress.staged.clear()


def _read_stream(stream: BinaryIO, store: Store, staging: Path, progress: _Progress) -> None:
    seen: set[str] = set()
    compressed = _Counted(stream)
    reader = _CappedReader(
        # the stubs ask for seek(); gzip reads a stream front to back and never calls it
        gzip.GzipFile(fileobj=compressed, mode="rb"),  # type: ignore[call-overload]
        MANIFEST_LIMIT + ENTRY_OVERHEAD + END_OVERHEAD,
        compressed,
    )
    try:
        # the stubs ask for write(), seek() and tell(); a "r|" stream is only ever read
        with tarfile.open(fileobj=reader, mode="r|") as tar:  # type: ignore[call-overload]
            for member in tar:
                _check_member(member)
                if not OBJECT_NAME_RE.fullmatch(member.name):
                    _read_manifest(member, tar, store, progress)
                    assert progress.manifest is not None
                    sizes = progress.manifest.object_sizes()
                    reader.limit = (
                        reader.count
                        + sum(sizes.values())
                        + ENTRY_OVERHEAD * (len(sizes) + 1)
                        + END_OVERHEAD
                    )
                else:
                    _read_object(member, tar, store, staging, progress, seen)
        # Read up to the gzip trailer: checks its CRC and leaves no unread bytes for the sender.
        while reader.read(CHUNK):
            pass
    except (tarfile.ReadError, EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise Failed(
            f"receive: the stream is cut or corrupt ({exc}); objects that arrived intact are "
            "kept, push again to send the rest"
        ) from None
    if progress.manifest is None:
        raise BadInput("receive: the stream holds no manifest.json")


def carried_objects() -> dict[str, Path]:
    """The files of the switcher this runs from, by sha256: objects the push need not send."""
    package = Path(__file__).resolve().parent
    found: dict[str, Path] = {}
    for path in sorted(package.rglob("*")):
        if "__pycache__" in path.parts or path.is_symlink() or not path.is_file():
            continue
        with open(path, "rb") as fh:
            found.setdefault(hashlib.file_digest(fh, "sha256").hexdigest(), path)
    return found


def _take_carried(store: Store, staging: Path, manifest: Manifest, wanted: list[str]) -> None:
    """Store the objects the switcher's own files provide, each verified as it is copied;
    nothing is stored unless they provide every one of `wanted`."""
    carried = carried_objects()
    lacking = [sha for sha in wanted if sha not in carried]
    if lacking:
        raise Failed(
            f"receive: {plural(len(lacking), 'object')} of generation {manifest.generation} "
            f"{'is' if len(lacking) == 1 else 'are'} "
            f"neither stored nor in the stream (first: {lacking[0]}); ask `have` and push again"
        )
    for sha in wanted:
        staged = staging / sha
        with open(carried[sha], "rb") as src, open(staged, "wb") as sink:
            actual = _drain(src, carried[sha].stat().st_size, sink)
            sink.flush()
            os.fsync(sink.fileno())
        if actual != sha:
            raise Failed(f"receive: {carried[sha]} changed while it was read; push again")
        store.add_object(sha, staged)


def _assemble(store: Store, manifest: Manifest, manifest_bytes: bytes, staging: Path) -> Path:
    """Build the generation tree from objects under staging; return the verified folder."""
    tree = staging / manifest.folder_name
    tree.mkdir()
    (tree / MANIFEST_NAME).write_bytes(manifest_bytes)
    os.chmod(tree / MANIFEST_NAME, OBJECT_MODE)
    folders = {tree}
    for path, entry in sorted(manifest.files.items()):
        dest = tree / path
        dest.parent.mkdir(parents=True, exist_ok=True)
        folders.update(p for p in dest.parents if tree in p.parents)
        mode = read_only_mode(entry.mode)
        source = (
            store.object_path(entry.sha256)
            if mode == OBJECT_MODE
            else store.object_with_mode(entry.sha256, mode)
        )
        os.link(source, dest)
    for path, entry in manifest.files.items():
        dest = tree / path
        with open(dest, "rb") as fh:
            actual = hashlib.file_digest(fh, "sha256").hexdigest()
        if actual != entry.sha256:
            obj = store.object_path(entry.sha256)
            raise Failed(
                f"receive: stored object {obj} does not match its sha256 (used by {path}); "
                "delete that file and push again"
            )
    # Folders read-only, deepest first, then fsync so the rename publishes durable content.
    for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
        fsync_dir(folder)
        if folder != tree:
            os.chmod(folder, 0o555)
    return tree


def receive(store: Store, stream: BinaryIO) -> Received:
    """Run a whole receive; the caller holds the lock."""
    store.ensure()
    for stale in store.incoming.iterdir():
        remove_tree(stale)  # left by a killed receive or gc; we hold the lock, nobody owns it
    staging = Path(tempfile.mkdtemp(prefix="receive-", dir=store.incoming))
    progress = _Progress()
    try:
        try:
            _read_stream(stream, store, staging, progress)
        except (Failed, OSError):
            _keep_what_arrived(store, staging, progress)  # cut, not refused
            raise
        _promote(store, staging, progress)
        manifest = progress.manifest
        assert manifest is not None
        result = Received(
            generation=manifest.generation,
            hash=manifest.hash,
            objects_received=progress.objects_received,
            bytes_received=progress.bytes_received,
            already_present=False,
        )
        final = store.generations_dir / manifest.folder_name
        if final.is_dir():
            return dataclasses.replace(result, already_present=True)
        clash = [g.name for g in store.generations() if g.number == manifest.generation]
        if clash:
            raise BadInput(
                f"receive: generation {manifest.generation} already exists here as {clash[0]} "
                f"with other content (this one is {manifest.folder_name}); build a new generation"
            )
        missing = [sha for sha in manifest.object_sizes() if not store.has_object(sha)]
        if missing:
            _take_carried(store, staging, manifest, missing)
        tree = _assemble(store, manifest, progress.manifest_bytes, staging)
        faults.point("receive-before-publish")
        os.rename(tree, final)
        os.chmod(final, 0o555)
        fsync_dir(store.generations_dir)
        faults.point("receive-after-publish")
        return result
    finally:
        remove_tree(staging)


def have_request(request: Any) -> list[Any] | HaveRequest:
    """`have`'s stdin, parsed JSON: a plain list of sha256 (checked by the store), or a
    HaveRequest."""
    if isinstance(request, list):
        return request
    if not isinstance(request, dict) or set(request) - {"base", "hashes"}:
        raise BadInput('have: stdin must be a JSON list of sha256 or {"base": …, "hashes": […]}')
    hashes = request.get("hashes")
    if not isinstance(hashes, list):
        raise BadInput("have: `hashes` must be a JSON list of sha256 strings")
    for sha in hashes:  # before the base, as the store would: the first problem is named
        if not isinstance(sha, str) or not SHA256_RE.fullmatch(sha):
            raise BadInput(f"have: {sha!r} is not a lowercase sha256 hex digest")
    name = request.get("base")
    if name is not None and (not isinstance(name, str) or not BASE_RE.fullmatch(name)):
        raise BadInput(f"have: base {name!r} is not a generation folder name like 7-1a2b3c4d5e6f")
    return HaveRequest(base=name, hashes=tuple(hashes))


def have(store: Store, raw: Any) -> ObjectsMissing | HaveReply:
    """What a push must send. A JSON list of sha256 (every object of the bundle) is answered
    with those the object store lacks. `{"base": "N-HASH12" or null, "hashes": [...]}` names a
    generation to send the manifest against and the hashes that base lacks: the answer says
    whether the base can serve (`base`, else null) and which of the hashes neither the store
    nor this switcher's own files hold."""
    request = have_request(raw)
    if not isinstance(request, HaveRequest):
        return ObjectsMissing(missing=tuple(store.missing(request)))
    missing = store.missing(list(request.hashes))
    carried = carried_objects() if missing else {}
    return HaveReply(
        base=usable_base(store, request.base),
        missing=tuple(sha for sha in missing if sha not in carried),
    )


def usable_base(store: Store, name: str | None) -> str | None:
    """`name` if it is a complete generation here whose objects are all stored, else None."""
    if name is None:
        return None
    gen = store.named(name)
    if gen is None:
        return None
    try:
        manifest = store.load_manifest(gen)
    except SwitcherError:
        return None  # damaged: the push sends the full manifest instead
    return name if all(store.has_object(sha) for sha in manifest.object_sizes()) else None
