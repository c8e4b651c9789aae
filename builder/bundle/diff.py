"""What changed between two generations: images, units, files. Pure; formatting at the end."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from activate.manifest_format import MANIFEST_NAME, Manifest, SecretUse
from builder.base.words import plural

Reader = Callable[[str], bytes]
HIDDEN = (MANIFEST_NAME,)


@attrs.frozen
class ImageChange:
    service: str
    old: str | None
    new: str | None

    def line(self) -> str:
        if self.old and self.new:
            old, new = parse_ref(self.old), parse_ref(self.new)
            if old.repo != new.repo:
                return f"{self.service}: {self.old} -> {self.new}"
            return f"{self.service}: {_pin_change(old, new)}"
        if self.new:
            return f"{self.service}: added {self.new}"
        return f"{self.service}: removed {self.old}"


@attrs.frozen
class Ref:
    """An image reference split: REPO[:TAG][@DIGEST]."""

    repo: str
    tag: str | None
    digest: str | None


def parse_ref(ref: str) -> Ref:
    name, _, digest = ref.partition("@")
    repo, colon, tag = name.rpartition(":")
    if not colon or "/" in tag:  # a registry port, not a tag
        repo, tag = name, ""
    return Ref(repo, tag or None, digest or None)


def short(digest: str | None) -> str:
    return f"{digest[:19]}…" if digest else "-"


def _pin_change(old: Ref, new: Ref) -> str:
    """What changed between two pins of one image: the tag, the digest, or both."""
    if old.tag == new.tag:
        if old.digest and new.digest:
            return f"digest changed {short(old.digest)} -> {short(new.digest)}"
        if new.digest:
            return f"{new.tag or ''} locked at {short(new.digest)}".lstrip()
        return f"{old.tag or ''} unlocked (was {short(old.digest)})".lstrip()
    tags = f"{old.tag or short(old.digest)} -> {new.tag or short(new.digest)}"
    if old.tag and new.tag and (old.digest or new.digest):
        tags += f" (digest {short(old.digest)} -> {short(new.digest)})"
    return tags


@attrs.frozen
class FileChange:
    path: str
    status: str  # added, removed, changed
    lines: tuple[str, ...]  # unified diff lines, empty for binary files
    added: int
    removed: int
    binary: bool = False


@attrs.frozen
class Diff:
    host: str
    old: tuple[int, str]
    new: tuple[int, str]
    images: tuple[ImageChange, ...]
    units_added: tuple[str, ...]
    units_removed: tuple[str, ...]
    units_changed: tuple[str, ...]
    files: tuple[FileChange, ...]
    switcher_changed: bool
    secrets: tuple[tuple[str, str], ...] = ()  # (name, added/removed/changed/set/unset)

    @property
    def empty(self) -> bool:
        return not (
            self.secrets
            or self.images
            or self.units_added
            or self.units_removed
            or self.units_changed
            or self.files
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "from": {"generation": self.old[0], "hash": self.old[1]},
            "to": {"generation": self.new[0], "hash": self.new[1]},
            "images": [attrs.asdict(i) for i in self.images],
            "units": {
                "added": list(self.units_added),
                "removed": list(self.units_removed),
                "changed": list(self.units_changed),
            },
            "switcher_changed": self.switcher_changed,
            "secrets": [{"name": n, "status": st} for n, st in self.secrets],
            "files": [
                {
                    "path": f.path,
                    "status": f.status,
                    "added": f.added,
                    "removed": f.removed,
                    "binary": f.binary,
                    "diff": "".join(f.lines),
                }
                for f in self.files
            ],
        }


def diff_generations(
    host: str, old: Manifest, new: Manifest, read_old: Reader, read_new: Reader
) -> Diff:
    images = tuple(
        ImageChange(s, old.images.get(s), new.images.get(s))
        for s in sorted(set(old.images) | set(new.images))
        if old.images.get(s) != new.images.get(s)
    )
    added = tuple(sorted(set(new.units) - set(old.units)))
    removed = tuple(sorted(set(old.units) - set(new.units)))
    changed = tuple(
        sorted(
            k
            for k in set(old.units) & set(new.units)
            if old.units[k].closure != new.units[k].closure
        )
    )
    files = []
    for path in sorted(set(old.files) | set(new.files)):
        if path in HIDDEN or path.startswith("activate/"):
            continue
        a, b = old.files.get(path), new.files.get(path)
        if a and b and a.sha256 == b.sha256 and a.mode == b.mode:
            continue
        status = "added" if a is None else "removed" if b is None else "changed"
        files.append(_file_change(path, status, read_old if a else None, read_new if b else None))
    return Diff(
        host,
        (old.generation, old.hash),
        (new.generation, new.hash),
        images,
        added,
        removed,
        changed,
        tuple(files),
        old.switcher != new.switcher,
        secret_changes(old.secrets, new.secrets),
    )


def secret_changes(
    old: Mapping[str, SecretUse], new: Mapping[str, SecretUse]
) -> tuple[tuple[str, str], ...]:
    """Names only: a secret's keyed fingerprint says whether it changed, never its value."""
    out = []
    for name in sorted(set(old) | set(new)):
        a = old[name].fingerprint if name in old else None
        b = new[name].fingerprint if name in new else None
        if name not in old:
            out.append((name, "added" if b else "added, not set"))
        elif name not in new:
            out.append((name, "removed"))
        elif a != b:
            out.append((name, "changed" if a and b else "set" if b else "unset"))
    return tuple(out)


def _file_change(
    path: str, status: str, read_old: Reader | None, read_new: Reader | None
) -> FileChange:
    a = read_old(path) if read_old else b""
    b = read_new(path) if read_new else b""
    try:
        a_text, b_text = a.decode(), b.decode()
    except UnicodeDecodeError:
        return FileChange(path, status, (), 0, 0, binary=True)
    lines = tuple(
        difflib.unified_diff(
            a_text.splitlines(keepends=True),
            b_text.splitlines(keepends=True),
            fromfile=f"a/{path}" if read_old else "/dev/null",
            tofile=f"b/{path}" if read_new else "/dev/null",
        )
    )
    lines = tuple(
        line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines
    )
    plus = sum(1 for line in lines if line.startswith("+") and not line.startswith("+++"))
    minus = sum(1 for line in lines if line.startswith("-") and not line.startswith("---"))
    return FileChange(path, status, lines, plus, minus)


class Style:
    def __init__(self, colour: bool) -> None:
        self.colour = colour

    def paint(self, text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.colour else text


def format_text(d: Diff, colour: bool, stat: bool = False) -> str:
    s = Style(colour)
    out = [
        s.paint(
            f"{d.host}: generation {d.old[0]} ({d.old[1][:12]}) -> {d.new[0]} ({d.new[1][:12]})",
            "1",
        )
    ]
    if d.empty:
        out.append("no changes")
        return "\n".join(out) + "\n"
    if d.images:
        out.append(s.paint("images:", "1"))
        out += [f"  {i.line()}" for i in d.images]
    if d.units_added or d.units_removed or d.units_changed:
        out.append(s.paint("units:", "1"))
        out += [s.paint(f"  + {u}", "32") for u in d.units_added]
        out += [s.paint(f"  - {u}", "31") for u in d.units_removed]
        out += [s.paint(f"  ~ {u}", "33") for u in d.units_changed]
    out += [f"secret {name} {status}" for name, status in d.secrets]
    if d.switcher_changed:
        out.append("switcher: changed")
    if stat:
        out.append(s.paint("files:", "1"))
        width = max(len(f.path) for f in d.files) if d.files else 0
        for f in d.files:
            counts = (
                "binary"
                if f.binary
                else f"{s.paint('+' + str(f.added), '32')} {s.paint('-' + str(f.removed), '31')}"
            )
            out.append(f"  {f.path.ljust(width)} | {f.status:<7} {counts}")
        total_plus = sum(f.added for f in d.files)
        total_minus = sum(f.removed for f in d.files)
        out.append(
            f"  {plural(len(d.files), 'file')} changed, {plural(total_plus, 'insertion')}(+), "
            f"{plural(total_minus, 'deletion')}(-)"
        )
        return "\n".join(out) + "\n"
    text = "\n".join(out) + "\n"
    for f in d.files:
        text += "\n"
        if f.binary:
            text += f"binary file {f.path} {f.status}\n"
            continue
        for line in f.lines:
            if line.startswith(("+++", "---")):
                text += s.paint(line.rstrip("\n"), "1") + "\n"
            elif line.startswith("@@"):
                text += s.paint(line.rstrip("\n"), "36") + "\n"
            elif line.startswith("+"):
                text += s.paint(line.rstrip("\n"), "32") + "\n"
            elif line.startswith("-"):
                text += s.paint(line.rstrip("\n"), "31") + "\n"
            else:
                text += line
    return text
