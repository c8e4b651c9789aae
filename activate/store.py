"""The server's state tree: objects, generation folders, the `current` link and history.

STATE/objects/ab/abcdef…          every file ever pushed, by sha256, mode 0444
STATE/objects/ab/abcdef….0555     the same bytes with another mode (hard links share a mode)
STATE/generations/N-HASH12/       complete generations only
STATE/current -> generations/N-…  flipped with a temporary symlink and rename(2)
STATE/history.jsonl               one JSON object per line, append-only
STATE/pending.json                a switch in progress (left behind only if it was killed)
STATE/incoming/                   staging; never read as a generation
"""

from __future__ import annotations

import datetime
import json
import os
import pwd
import re
import shutil
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import durable, notify, strict_json
from .durable import fsync_dir
from .errors import BadInput, Failed
from .manifest import MANIFEST_NAME, SHA256_RE, Manifest, parse_manifest

OBJECT_MODE = 0o444
GENERATION_RE = re.compile(r"^([0-9]+)-([0-9a-f]{12})\Z")


def read_only_mode(mode: int) -> int:
    """Generation trees are read-only: the manifest's mode without its write bits."""
    return mode & 0o7555


def remove_tree(path: Path) -> None:
    """rmtree that also works on read-only generation folders when not running as root."""
    if path.is_symlink() or not path.is_dir():
        path.unlink(missing_ok=True)
        return
    for folder, _dirs, _files in os.walk(path):
        os.chmod(folder, stat.S_IMODE(os.lstat(folder).st_mode) | stat.S_IRWXU)
    shutil.rmtree(path)


def now_utc() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def invoking_user() -> str:
    """Who asked: BUNDLE_USER (set for a detached activation), the sudo caller, or the
    account running the switcher."""
    name = os.environ.get("BUNDLE_USER") or os.environ.get("SUDO_USER")
    if name:
        return name
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


@dataclass(frozen=True)
class Generation:
    """One complete generation folder."""

    number: int
    hash12: str
    path: Path

    @property
    def name(self) -> str:
        return f"{self.number}-{self.hash12}"


@dataclass(frozen=True)
class Store:
    """STATE on disk. Methods do the I/O; nothing is cached between calls."""

    root: Path

    @property
    def objects(self) -> Path:
        return self.root / "objects"

    @property
    def generations_dir(self) -> Path:
        return self.root / "generations"

    @property
    def incoming(self) -> Path:
        return self.root / "incoming"

    @property
    def current_link(self) -> Path:
        return self.root / "current"

    @property
    def boot_link(self) -> Path:
        # exists only while the next boot brings up another generation than `current`
        return self.root / "boot-generation"

    @property
    def lock_path(self) -> Path:
        return self.root / "lock"

    @property
    def history_path(self) -> Path:
        return self.root / "history.jsonl"

    @property
    def pending_path(self) -> Path:
        return self.root / "pending.json"

    def ensure(self) -> None:
        """Create the tree; objects and incoming may hold secrets' neighbours, so root only."""
        self.root.mkdir(mode=0o755, parents=True, exist_ok=True)
        self.generations_dir.mkdir(mode=0o755, exist_ok=True)
        self.objects.mkdir(mode=0o700, exist_ok=True)
        self.incoming.mkdir(mode=0o700, exist_ok=True)

    def require_exists(self) -> None:
        if not self.generations_dir.is_dir():
            raise BadInput(
                f"{self.root} holds no generations (no {self.generations_dir}); "
                "check --state or push a generation first"
            )

    # objects -------------------------------------------------------------

    def object_path(self, sha: str, mode: int = OBJECT_MODE) -> Path:
        base = self.objects / sha[:2] / sha
        return base if mode == OBJECT_MODE else base.with_name(f"{sha}.{mode:04o}")

    def has_object(self, sha: str) -> bool:
        return self.object_path(sha).is_file()

    def missing(self, shas: Iterable[str]) -> list[str]:
        wanted: list[str] = []
        for sha in shas:
            if not isinstance(sha, str) or not SHA256_RE.fullmatch(sha):
                raise BadInput(f"have: {sha!r} is not a lowercase sha256 hex digest")
            if sha not in wanted:
                wanted.append(sha)
        return [sha for sha in wanted if not self.has_object(sha)]

    def add_object(self, sha: str, staged: Path) -> None:
        """Move a verified, fsynced staged file into the object store."""
        target = self.object_path(sha)
        target.parent.mkdir(mode=0o700, exist_ok=True)
        os.chmod(staged, OBJECT_MODE)
        durable.publish_file(staged, target)

    def object_with_mode(self, sha: str, mode: int) -> Path:
        """The object as an inode with `mode`; a copy is made once per (sha, mode)."""
        target = self.object_path(sha, mode)
        if target.is_file():
            return target
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        shutil.copyfile(self.object_path(sha), tmp)
        os.chmod(tmp, mode)
        durable.publish_file(tmp, target)
        return target

    def all_objects(self) -> list[Path]:
        if not self.objects.is_dir():
            return []
        return sorted(p for d in self.objects.iterdir() if d.is_dir() for p in d.iterdir())

    # generations -----------------------------------------------------------

    def generations(self) -> list[Generation]:
        if not self.generations_dir.is_dir():
            return []
        found = []
        for entry in self.generations_dir.iterdir():
            m = GENERATION_RE.fullmatch(entry.name)
            if m and entry.is_dir() and not entry.is_symlink():
                found.append(Generation(int(m.group(1)), m.group(2), entry))
        return sorted(found, key=lambda g: (g.number, g.hash12))

    def find(self, number: int) -> Generation:
        matches = [g for g in self.generations() if g.number == number]
        if not matches:
            have = ", ".join(str(g.number) for g in self.generations()) or "none"
            raise BadInput(
                f"generation {number} is not on this server ({self.generations_dir} has: {have}); "
                "push it first"
            )
        if len(matches) > 1:
            names = ", ".join(g.name for g in matches)
            raise Failed(f"generation {number} is ambiguous ({names}); remove the wrong folder")
        return matches[0]

    def named(self, name: str) -> Generation | None:
        """The complete generation folder called `name` (N-HASH12), if there is one."""
        return next((g for g in self.generations() if g.name == name), None)

    def load_manifest(self, gen: Generation) -> Manifest:
        path = gen.path / MANIFEST_NAME
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise Failed(
                f"{path}: cannot read ({exc.strerror}); the generation is damaged"
            ) from None
        manifest = parse_manifest(data, str(path))
        if manifest.folder_name != gen.name:
            raise Failed(
                f"{path}: manifest hash {manifest.hash[:12]} / generation {manifest.generation} "
                f"do not match the folder name {gen.name}; the generation is damaged, push it again"
            )
        return manifest

    # current ---------------------------------------------------------------

    def current(self) -> Generation | None:
        return self._pointed(self.current_link)

    def boot(self) -> Generation | None:
        """The generation the next boot brings up when it is not `current` (activate/bootgen.py)."""
        return self._pointed(self.boot_link)

    def set_boot(self, gen: Generation | None) -> None:
        """The next boot brings up `gen`; None (or `current`): what runs now."""
        current = self.current()
        if gen is None or (current is not None and gen.name == current.name):
            if self.boot_link.is_symlink():
                self.boot_link.unlink()
                fsync_dir(self.root)
            return
        durable.point_symlink(self.boot_link, f"generations/{gen.name}")

    def _pointed(self, link: Path) -> Generation | None:
        if not link.is_symlink():
            if link.exists():
                raise Failed(f"{link} is not a symlink; fix it by hand (see docs/switcher.md)")
            return None
        target = os.readlink(link)
        m = GENERATION_RE.fullmatch(Path(target).name)
        resolved = (link.parent / target).resolve()
        if not m or resolved.parent != self.generations_dir.resolve() or not resolved.is_dir():
            raise Failed(
                f"{link} points to {target!r}, not a generation folder; "
                "point it at generations/N-HASH by hand (see docs/switcher.md)"
            )
        return Generation(int(m.group(1)), m.group(2), self.generations_dir / m.group(0))

    def set_current(self, gen: Generation | None) -> None:
        """Atomically point `current` at gen (None removes it)."""
        link = self.current_link
        if gen is None:
            if link.is_symlink():
                link.unlink()
                fsync_dir(self.root)
            return
        durable.point_symlink(link, f"generations/{gen.name}")

    # pending switch ----------------------------------------------------------

    def write_pending(self, record: dict[str, Any]) -> None:
        """Note a switch in progress; it outlives a kill -9 so the next run knows."""
        durable.write_json(self.pending_path, record)

    def pending(self) -> dict[str, Any] | None:
        try:
            return strict_json.loads(self.pending_path.read_bytes(), "pending.json", "")
        except (FileNotFoundError, strict_json.JsonRefused):
            return None

    def clear_pending(self) -> None:
        durable.remove(self.pending_path)

    # history ---------------------------------------------------------------

    def append_history(self, entry: dict[str, Any]) -> None:
        line = json.dumps(entry, sort_keys=True, ensure_ascii=False) + "\n"
        fd = os.open(self.history_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
        notify.told(self.root, entry)  # [notify]: every history line is told (activate/notify.py)

    def history(self) -> list[dict[str, Any]]:
        try:
            text = self.history_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        entries = []
        for line in text.splitlines():
            try:
                entries.append(strict_json.loads(line, "history.jsonl", ""))
            except strict_json.JsonRefused:
                continue  # a torn last line after a crash is not worth failing over
        return entries


def history_entry(
    action: str, from_gen: int | None, to_gen: int | None, result: str, message: str
) -> dict[str, Any]:
    return {
        "time": now_utc(),
        "user": invoking_user(),
        "action": action,
        "from": from_gen,
        "to": to_gen,
        "result": result,
        "message": message,
    }


NEXT_BOOT = "next-boot"  # a --boot: its generation is recorded for the next boot, not active


def ever_active(history: list[dict[str, Any]]) -> list[int]:
    """Generations that were active at some point, oldest activation first."""
    seen: list[int] = []
    for e in history:
        if e.get("result") != "ok" or e.get("action") == NEXT_BOOT:
            continue
        for key in ("from", "to"):
            n = e.get(key)
            if isinstance(n, int) and not isinstance(n, bool) and n not in seen:
                seen.append(n)
    return seen


def rollback_target(
    history: list[dict[str, Any]], current: int | None, existing: set[int]
) -> int | None:
    """The newest generation older than `current` that was once active and is still on disk.

    Running `rollback` again therefore walks further back instead of toggling between two.
    """
    if current is None:
        return None
    older = [n for n in ever_active(history) if n < current and n in existing]
    return max(older) if older else None


def previous_active(history: list[dict[str, Any]], current: int | None) -> int | None:
    """The generation that was active right before `current` became active."""
    for e in reversed(history):
        if e.get("action") == NEXT_BOOT:
            continue
        if e.get("result") == "ok" and e.get("to") == current and e.get("from") != current:
            prev = e.get("from")
            return prev if isinstance(prev, int) and not isinstance(prev, bool) else None
    return None
