"""The image lock of a host: `stacks/lock/HOST.json`, each service's tag and the digest it named.

    {
      "format": 1,
      "host": "vps1",
      "images": {
        "web": {"digest": "sha256:…", "image": "docker.io/library/nginx", "tag": "1.27.3"}
      }
    }

`bundle lock HOST` writes it (builder/images/lock.py); a build reads it and nothing else about
digests, so a build needs no network. A service whose locked image and tag are the ones the stack
names runs `IMAGE:TAG@DIGEST`; any other service runs its tag, unless the host says
`lock = true`, which turns that into an error naming the command to run.

Written sorted with a trailing newline, by one rename, so the same lock is the same bytes and a
review sees only the lines that changed.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from activate import strict_json
from builder.base.errors import InputError
from builder.stack.model import Container, Stack

FORMAT = 1
LOCK_DIR = "lock"
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


@attrs.frozen
class Locked:
    """What one service's tag named when the lock was written."""

    image: str
    tag: str
    digest: str

    def ref(self) -> str:
        return f"{self.image}:{self.tag}@{self.digest}"


@attrs.frozen
class Lock:
    host: str
    images: Mapping[str, Locked] = attrs.field(factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "host": self.host,
            "images": {s: attrs.asdict(v) for s, v in sorted(self.images.items())},
        }

    def dumps(self) -> bytes:
        return (json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n").encode()


def lock_path(stacks_dir: Path, host: str) -> Path:
    return stacks_dir / LOCK_DIR / f"{host}.json"


def read_lock(stacks_dir: Path, host: str) -> Lock | None:
    """The host's lock, or None when it has none. A damaged lock is an input error."""
    path = lock_path(stacks_dir, host)
    shown = f"stacks/{LOCK_DIR}/{host}.json"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    redo = f"write it again with `bundle lock {host}`"
    try:
        doc = strict_json.loads(data, shown, redo)
    except strict_json.JsonRefused as e:
        raise InputError(e.message) from None
    if doc.get("format") != FORMAT or doc.get("host") != host:
        raise InputError(f"{shown}: not a lock of format {FORMAT} for host {host}; {redo}")
    images = doc.get("images")
    if not isinstance(images, dict):
        raise InputError(f'{shown}: "images" is not a table; {redo}')
    out = {}
    for service, entry in images.items():
        fields = entry if isinstance(entry, dict) else {}
        values = [fields.get(k) for k in ("image", "tag", "digest")]
        if not all(isinstance(v, str) and v for v in values) or set(fields) != {
            "image",
            "tag",
            "digest",
        }:
            raise InputError(f"{shown}: images.{service} needs image, tag and digest; {redo}")
        if not DIGEST.fullmatch(values[2]):  # type: ignore[arg-type]
            raise InputError(f"{shown}: images.{service}.digest is not sha256:<64 hex>; {redo}")
        out[service] = Locked(*values)  # type: ignore[arg-type]
    return Lock(host, out)


def write_lock(stacks_dir: Path, lock: Lock) -> Path:
    """Write the lock by one rename: a reader sees the old lock or the new one."""
    path = lock_path(stacks_dir, lock.host)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{lock.host}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(lock.dumps())
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def lockable(c: Container) -> bool:
    """A container pinned by tag only: a stack's own `digest` is already locked, and one that
    podman auto-updates follows its tag on the server by choice."""
    return c.version is not None and c.digest is None and not c.auto_update


def apply_lock(stack: Stack, lock: Lock | None, required: bool) -> Stack:
    """The stack with each locked service's digest set; `required` refuses what the lock lacks."""
    host = stack.host.name
    pinned = {}
    for name, c in sorted(stack.enabled_containers().items()):
        if not lockable(c):
            continue
        entry = lock.images.get(name) if lock else None
        if entry is not None and (entry.image, entry.tag) == (c.image, c.version):
            pinned[name] = attrs.evolve(c, digest=entry.digest)
        elif required:
            shown = f"stacks/{LOCK_DIR}/{host}.json"
            why = (
                f"{c.image}:{c.version} is not in {shown}"
                if entry is None
                else f"{c.image}:{c.version} is locked in {shown} as {entry.image}:{entry.tag}"
            )
            raise InputError(
                f"{host}: containers.{name}: {why} and [host] lock = true: run `bundle lock {host}`"
            )
    if not pinned:
        return stack
    return attrs.evolve(stack, containers={**stack.containers, **pinned})
