"""The one way a build reads a file of the stack tree: stacks, includes, templates, sources.

Every read is refused, with a message for a person, when the path is not a regular file, when
it (or a symlink on its way) leads outside its root, and, for text, when it is not UTF-8 or
holds a NUL byte. Files that fail are never read into a bundle.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from builder.base.errors import Problem


class UnreadableFile(Exception):
    """A file of the stack tree that cannot be used; `problem` says which and why."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(str(problem))
        self.problem = problem


def shown(path: Path, root: Path) -> str:
    """A path as the user knows it: under the root's own name (stacks/x.toml)."""
    lexical = Path(os.path.abspath(path))
    for base in (Path(os.path.abspath(root)), root.resolve()):
        if lexical.is_relative_to(base):
            return str(Path(root.name) / lexical.relative_to(base))
    return str(path)


def absent(path: Path) -> bool:
    """No file or symlink by this name; a name the file system refuses is left to the reader."""
    try:
        os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return True
    except (OSError, ValueError):
        return False  # read_bytes says why (a name too long, ...)
    return False


def escape_problem(path: Path, root: Path) -> str | None:
    """Why `path` cannot be read as a file inside `root`, or None when it can."""
    if "\0" in str(path):
        return "holds a NUL byte, which no file name can: remove it"
    lexical = Path(os.path.abspath(path))
    real_root = root.resolve()
    if not (lexical.is_relative_to(os.path.abspath(root)) or lexical.is_relative_to(real_root)):
        return f"is outside {root.name}/: use a file inside it"
    try:
        real = path.resolve()
    except (OSError, RuntimeError):
        return "is a symlink that leads round in a loop: point it at a file"
    if not real.is_relative_to(real_root):
        return f"is a symlink to {real}, outside {root.name}/: copy the file in instead"
    try:
        mode = real.stat().st_mode
    except FileNotFoundError:
        return "does not exist"
    except OSError as exc:
        # the file system refuses the name itself (too long, not a folder on the way, ...)
        return f"cannot be looked up ({exc.strerror}): give a shorter, plain file name"
    if not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "not a regular file"
        return f"is {kind}, not a file: give the path of a file"
    return None


def read_bytes(path: Path, root: Path) -> bytes:
    """The bytes of a file inside `root` (a symlink may point only within it)."""
    why = escape_problem(path, root)
    if why is not None:
        raise UnreadableFile(Problem(why, shown(path, root)))
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UnreadableFile(Problem(f"cannot read: {exc.strerror}", shown(path, root))) from None


def read_text(path: Path, root: Path) -> str:
    """The text of a UTF-8 file inside `root`; non-UTF-8 bytes are refused with their line."""
    data = read_bytes(path, root)
    where = shown(path, root)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise UnreadableFile(
            Problem(
                f"byte 0x{data[exc.start]:02x} is not UTF-8 text: save the file as UTF-8",
                where,
                None,
                line,
            )
        ) from None
    if "\0" in text:
        line = text.count("\n", 0, text.index("\0")) + 1
        raise UnreadableFile(
            Problem("holds a NUL byte: this is not a text file", where, None, line)
        )
    return text
