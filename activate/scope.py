"""Whose service manager the switcher drives: the system's (root) or a rootless user's.

A rootless host (`rootless = true` in its stack) is reached over SSH as its own user, so the
switcher runs as that user and everything follows from who it is. A folder standing in for a
server (`--root DIR`) always gets the system layout, whoever runs the switcher.

| | root | a rootless user |
|---|---|---|
| quadlet units | /etc/containers/systemd | ~/.config/containers/systemd |
| plain units (timers, scripts) | /etc/systemd/system | ~/.config/systemd/user |
| systemctl, systemd-run | system manager | `--user`: the user's manager, kept alive by lingering |
| started at boot by | multi-user.target | default.target of the user's manager |
| quadlet dry-run | `quadlet -dryrun` | `quadlet -user -dryrun` |
"""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass
from pathlib import Path

LINGER_DIR = Path("/var/lib/systemd/linger")


@dataclass(frozen=True)
class Scope:
    rootless: bool
    user: str
    uid: int
    home: Path

    @property
    def quadlet_dir(self) -> Path:
        """Relative to the server's root, so a folder standing in for it works the same."""
        if self.rootless:
            return self.home.relative_to("/") / ".config/containers/systemd"
        return Path("etc/containers/systemd")

    @property
    def systemd_dir(self) -> Path:
        if self.rootless:
            return self.home.relative_to("/") / ".config/systemd/user"
        return Path("etc/systemd/system")

    @property
    def boot_target(self) -> str:
        return "default.target" if self.rootless else "multi-user.target"

    def systemctl(self, *args: str) -> list[str]:
        return ["systemctl", "--user", *args] if self.rootless else ["systemctl", *args]

    def systemd_run(self, *args: str) -> list[str]:
        return ["systemd-run", "--user", *args] if self.rootless else ["systemd-run", *args]

    def journal(self, unit: str) -> str:
        """The command a person runs to read a unit's log, for error messages."""
        return f"journalctl --user -u {unit}" if self.rootless else f"journalctl -u {unit}"

    @property
    def lingering(self) -> bool:
        """Whether the user's manager runs without a login, and so starts its units at boot."""
        return (LINGER_DIR / self.user).exists()


SYSTEM = Scope(False, "root", 0, Path("/root"))


def current() -> Scope:
    uid = os.geteuid()
    if uid == 0:
        return SYSTEM
    entry = pwd.getpwuid(uid)
    # a non-interactive SSH command may lack it; systemctl --user needs it to find the manager
    os.environ.setdefault("XDG_RUNTIME_DIR", f"/run/user/{uid}")
    return Scope(True, entry.pw_name, uid, Path(entry.pw_dir))


CURRENT = current()


def for_root(root: Path) -> Scope:
    """The layout of unit files under ROOT: a real server's is the running user's."""
    return CURRENT if root == Path("/") else SYSTEM
