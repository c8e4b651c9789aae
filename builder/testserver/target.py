"""Throwaway real servers for the tests: systemd-nspawn + systemd PID 1 + sshd + podman/quadlet.

    with Target(registry=reg) as t:            # boots in ~0.5 s on a private netns
        t.ssh("systemctl is-system-running --wait")
        t.write_file("/etc/containers/systemd/web.container", text)
        t.reboot()                             # down + up, the overlay (the server's disk) is kept

Each target gets a number N (1..250) held by a lock file, so concurrent test processes never
share one: its netns and machine are called `bundle-tN`, sshd listens on 10.200.N.2:22 and the
host side of the veth is 10.200.N.1. State (overlay upper, podman storage, ssh key, pinned host
key) lives in $BUNDLE_TEST_TARGET_DIR/bundle-tN (default /var/tmp/bundle-targets). Whatever a
crashed run left under a number (nspawn process, overlay mount, netns, veth) is removed by the
next process that takes that number, and by a sweep the first time a process takes any.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import ipaddress
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import weakref
from pathlib import Path
from types import TracebackType

from .registry import REGISTRY_NAME, Registry

HARNESS_DIR = Path(__file__).resolve().parent
SCRIPT = HARNESS_DIR / "nspawn-target.sh"
NET_NUMBERS = range(1, 251)
NAME_PREFIX = "bundle-t"

REQUIRED_TOOLS = (
    "systemd-nspawn",
    "mmdebstrap",
    "ssh",
    "ssh-keygen",
    "ip",
    "findmnt",
    "flock",
    "setsid",
    "docker-registry",
)


class HarnessError(RuntimeError):
    """The test server could not be built, booted or stopped."""


class TargetCommandError(subprocess.CalledProcessError):
    """A command over ssh failed; its message carries the output."""

    def __str__(self) -> str:
        out = (self.stdout or "").strip()
        err = (self.stderr or "").strip()
        parts = [super().__str__()]
        if out:
            parts.append(f"stdout:\n{out[-3000:]}")
        if err:
            parts.append(f"stderr:\n{err[-3000:]}")
        return "\n".join(parts)


def host_problems() -> list[str]:
    """What keeps this machine from running targets (empty when it can)."""
    problems = []
    if os.geteuid() != 0:
        problems.append("the real test server needs root (systemd-nspawn, netns, overlay mounts)")
    problems += [f"{tool} is missing" for tool in REQUIRED_TOOLS if shutil.which(tool) is None]
    if not Path("/bin/busybox").is_file():
        problems.append("/bin/busybox is missing (busybox-static)")
    if problems:
        problems.append("run .ci/run once, or see docs/testing.md for the packages")
    return problems


def target_base() -> Path:
    return Path(os.environ.get("BUNDLE_TEST_TARGET_DIR", "/var/tmp/bundle-targets"))


def _script(*args: str | Path, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *map(str, args)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


_golden: Path | None = None


def golden_image() -> Path:
    """The golden trixie rootfs, built once per machine (~16 s) and cached.

    Cached in $BUNDLE_TEST_IMAGE_DIR (default /var/tmp/bundle-test-images) under a hash of the
    script's image section; safe to call from several processes at once.
    """
    global _golden
    if _golden is None:
        proc = _script("golden")
        if proc.returncode != 0:
            raise HarnessError(f"building the golden image failed:\n{proc.stderr[-4000:]}")
        _golden = Path(proc.stdout.strip().splitlines()[-1])
    return _golden


def quadlet_binary() -> Path:
    """podman's quadlet generator from the golden image (links only libc, runs on the host).

    Dry run: `QUADLET_UNIT_DIRS=D quadlet -dryrun` prints the generated units, exit 1 on any
    bad file (the messages are on stderr)."""
    path = golden_image() / "usr/libexec/podman/quadlet"
    if not os.access(path, os.X_OK):
        raise HarnessError(f"{path} is not an executable")
    return path


def _children(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            text = Path(f"/proc/{pid}/task/{task}/children").read_text()
            found += [int(x) for x in text.split()]
    return found


def _mounts_below(path: Path) -> list[str]:
    prefix = str(path).rstrip("/") + "/"
    mounts = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            target = line.split()[4].encode().decode("unicode_escape")
            if target == str(path) or target.startswith(prefix):
                mounts.append(target)
    return mounts


def _remove_state(state: Path) -> None:
    if not state.exists():
        return
    mounts = _mounts_below(state)
    if mounts:
        raise HarnessError(f"refusing to remove {state}: still mounted: {mounts}")
    subprocess.run(["rm", "-rf", "--one-file-system", str(state)], check=True)


def _subnet_in_use(n: int) -> bool:
    out = subprocess.run(
        ["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True, check=True
    ).stdout
    net = ipaddress.ip_network(f"10.200.{n}.0/24")
    for line in out.splitlines():
        fields = line.split()
        if "inet" in fields:
            addr = fields[fields.index("inet") + 1]
            if ipaddress.ip_interface(addr).ip in net:
                return True
    return False


class _NumberLock:
    """An exclusive flock on BASE/bundle-tN.lock; held as long as a Target owns N."""

    def __init__(self, base: Path, n: int) -> None:
        self.n = n
        self.path = base / f"{NAME_PREFIX}{n}.lock"
        self.fd: int | None = None

    def try_acquire(self) -> bool:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd
        return True

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _clean_stale(base: Path, n: int) -> None:
    """Remove what a dead run left under number N (the caller holds N's lock)."""
    state = base / f"{NAME_PREFIX}{n}"
    if (state / "target.info").exists():
        _script("down", state, timeout=120)
    _remove_state(state)


_swept = False


def _sweep(base: Path) -> None:
    """Once per process: clean every target folder whose owner is gone."""
    global _swept
    if _swept:
        return
    _swept = True
    for state in sorted(base.glob(f"{NAME_PREFIX}*")):
        suffix = state.name[len(NAME_PREFIX) :]
        if not state.is_dir() or not (suffix.isascii() and suffix.isdigit()):
            continue
        lock = _NumberLock(base, int(suffix))
        if lock.try_acquire():
            try:
                _clean_stale(base, lock.n)
            finally:
                lock.release()


_live: weakref.WeakSet[Target] = weakref.WeakSet()


@atexit.register
def _down_all() -> None:
    for target in list(_live):
        with contextlib.suppress(Exception):
            target.down()


class Target:
    """One throwaway server in its own network namespace (`netns:N` mode of the script).

    Attributes (valid after `up()`): `n`, `name` (bundle-tN), `host` (10.200.N.2), `port` (22),
    `user` ("root"), `gateway` (10.200.N.1, the host side), `state_dir`, `key_path` (private
    key that logs in as root), `known_hosts_path` (pinned host keys for `host`),
    `boot_seconds` (duration of the last boot until ssh worked).
    """

    user = "root"

    def __init__(self, registry: Registry | None = None, image: Path | None = None) -> None:
        self.registry = registry
        self.image = image
        self.n = 0
        self.name = ""
        self.host = ""
        self.port = 22
        self.gateway = ""
        self.state_dir = Path()
        self.boot_seconds = 0.0
        self._lock: _NumberLock | None = None
        self._running = False

    # ---- lifecycle ------------------------------------------------------------------------

    @property
    def key_path(self) -> Path:
        return self.state_dir / "id_ed25519"

    @property
    def known_hosts_path(self) -> Path:
        return self.state_dir / "known_hosts"

    @property
    def console_log(self) -> Path:
        return self.state_dir / "console.log"

    def _allocate(self) -> None:
        base = target_base()
        base.mkdir(parents=True, exist_ok=True)
        _sweep(base)
        for n in NET_NUMBERS:
            lock = _NumberLock(base, n)
            if not lock.try_acquire():
                continue
            try:
                _clean_stale(base, n)
                if _subnet_in_use(n):
                    lock.release()
                    continue
            except BaseException:
                lock.release()
                raise
            self._lock = lock
            self.n = n
            self.name = f"{NAME_PREFIX}{n}"
            self.host = f"10.200.{n}.2"
            self.gateway = f"10.200.{n}.1"
            self.state_dir = base / self.name
            self.state_dir.mkdir()
            return
        raise HarnessError(f"no free target number in {NET_NUMBERS} (see {base})")

    def _seed_overlay(self, image: Path) -> None:
        """Files the server has from its first boot: the test registry's name and settings."""
        if self.registry is None:
            return
        upper = self.state_dir / "upper"
        hosts = (image / "etc/hosts").read_text()
        files = {
            "etc/hosts": f"{hosts.rstrip()}\n{self.gateway}\t{REGISTRY_NAME}\n",
            "etc/containers/registries.conf.d/50-bundle-test-registry.conf": (
                self.registry.registries_conf()
            ),
        }
        for rel, text in files.items():
            path = upper / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            path.chmod(0o644)

    def _boot(self) -> None:
        image = self.image or golden_image()
        t0 = time.monotonic()
        proc = _script("up", image, self.state_dir, self.name, f"netns:{self.n}", timeout=180)
        if proc.returncode != 0:
            raise HarnessError(
                f"target {self.name} did not come up:\n{proc.stdout[-2000:]}{proc.stderr[-4000:]}"
            )
        self.boot_seconds = time.monotonic() - t0
        self._running = True

    def _halt(self) -> None:
        proc = _script("down", self.state_dir, timeout=120)
        self._running = False
        if proc.returncode != 0:
            raise HarnessError(f"stopping {self.name} failed:\n{proc.stderr[-4000:]}")

    def up(self) -> Target:
        """Allocate a number, boot a fresh server and wait until root can log in over ssh."""
        if self._lock is not None:
            raise HarnessError(f"{self.name} is already up")
        image = self.image or golden_image()
        self._allocate()
        _live.add(self)
        try:
            self._seed_overlay(image)
            self._boot()
        except BaseException:
            self.down()
            raise
        return self

    def down(self) -> None:
        """Stop the server and remove everything it had: process, mounts, netns, state."""
        if self._lock is None:
            return
        try:
            if self.state_dir.exists():
                self._halt()
                _remove_state(self.state_dir)
        finally:
            self._lock.release()
            self._lock = None
            _live.discard(self)

    def reboot(self) -> None:
        """Power off and boot again on the same disk (overlay and podman storage are kept)."""
        if self._lock is None:
            raise HarnessError("reboot() of a target that is not up")
        self._halt()
        self._boot()

    def power_cut(self) -> None:
        """Pull the plug, then boot again on the same disk.

        Every process of the server dies at the same instant (SIGKILL to its PID 1 takes its
        whole PID namespace along): no unit is stopped, nothing is flushed or cleaned up by the
        server. What it had written survives, as the host's page cache holds it; losing
        unwritten data as well would need a virtual machine.
        """
        if self._lock is None:
            raise HarnessError("power_cut() of a target that is not up")
        nspawn = int((self.state_dir / "nspawn.pid").read_text())
        for init in _children(nspawn):
            with contextlib.suppress(ProcessLookupError):
                os.kill(init, signal.SIGKILL)
        for _ in range(300):
            if not Path(f"/proc/{nspawn}").exists():
                break
            with contextlib.suppress(ChildProcessError):
                os.waitpid(nspawn, os.WNOHANG)
            time.sleep(0.05)
        self._halt()  # the mounts and the network namespace; nspawn is gone already
        self._boot()

    def __enter__(self) -> Target:
        return self.up()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.down()

    # ---- using it -------------------------------------------------------------------------

    def ssh_argv(self) -> list[str]:
        """The ssh command line (without the remote command) that logs in as root."""
        return [
            "ssh",
            "-F", "/dev/null",
            "-i", str(self.key_path),
            "-p", str(self.port),
            "-o", "BatchMode=yes",
            "-o", "IdentitiesOnly=yes",
            "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={self.known_hosts_path}",
            "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "ConnectTimeout=60",  # a hang guard: under load sshd may take seconds to greet
            "-o", "LogLevel=ERROR",
            f"{self.user}@{self.host}",
        ]  # fmt: skip

    def ssh(
        self,
        cmd: str,
        check: bool = True,
        *,
        input: str | bytes | None = None,
        timeout: float | None = 300,
    ) -> subprocess.CompletedProcess[str]:
        """Run `cmd` through the server's login shell as root; stdout/stderr come back as text.

        With check=True a non-zero exit raises TargetCommandError (its message has the output).
        """
        if not self._running:
            raise HarnessError("ssh to a target that is not running")
        data = input.encode() if isinstance(input, str) else input
        proc = subprocess.run(
            [*self.ssh_argv(), "--", cmd],
            input=data if data is not None else b"",
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        result = subprocess.CompletedProcess(
            proc.args,
            proc.returncode,
            proc.stdout.decode(errors="replace"),
            proc.stderr.decode(errors="replace"),
        )
        if check and result.returncode != 0:
            raise TargetCommandError(result.returncode, cmd, result.stdout, result.stderr)
        return result

    def write_file(self, path: str, data: str | bytes, mode: int = 0o644) -> None:
        """Create or replace a file on the server atomically (parents are created)."""
        q = shlex.quote(path)
        tmp = shlex.quote(f"{path}.tmp-harness")
        self.ssh(
            f'mkdir -p "$(dirname {q})" && cat > {tmp} && chmod {mode:o} {tmp} && mv {tmp} {q}',
            input=data,
        )

    def read_file(self, path: str) -> str:
        return self.ssh(f"cat {shlex.quote(path)}").stdout

    def url(self, port: int, path: str = "/") -> str:
        """http://10.200.N.2:PORT/PATH: a port the server publishes on 0.0.0.0."""
        return f"http://{self.host}:{port}{path}"

    def __repr__(self) -> str:
        state = "running" if self._running else ("allocated" if self._lock else "down")
        return f"<Target {self.name or '?'} {self.host or '-'} {state}>"


# ---- a server left running after its process ends (bundle preview --keep) ----------------

KEEPER = "import signal; signal.pause()  # holds a bundle test server's number: bundle-keeper"


def keep_running(target: Target) -> int:
    """Leave `target` up when this process ends: a small process of its own holds the
    number's lock (the next run's sweep would otherwise remove the server). Its pid."""
    lock = target._lock
    if lock is None or lock.fd is None:
        raise HarnessError(f"{target.name or 'the server'} is not up")
    keeper = subprocess.Popen(
        [sys.executable, "-c", KEEPER],
        pass_fds=(lock.fd,),
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    lock.release()  # the keeper's copy of the descriptor holds the flock from here on
    target._lock = None
    _live.discard(target)
    return keeper.pid


def keep_noted(target: Target, record: Path) -> None:
    """`keep_running`, and note in `record` what `stop_noted` needs to stop the server."""
    pid = keep_running(target)
    record.write_text(json.dumps({"n": target.n, "keeper": pid, "address": target.host}))


def stop_noted(record: Path) -> str | None:
    """Stop the server `record` names and remove the record; the server's address, or None
    when there is no readable record."""
    try:
        kept = json.loads(record.read_text())
    except (OSError, ValueError):
        return None
    stop_kept(int(kept["n"]), int(kept["keeper"]))
    record.unlink()
    return str(kept.get("address"))


def stop_kept(n: int, pid: int) -> None:
    """Stop the server `keep_running` left under number `n`, and its keeper `pid`."""
    with contextlib.suppress(OSError):
        if KEEPER.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
            os.kill(pid, signal.SIGTERM)  # only our keeper: a pid may have been reused
    lock = _NumberLock(target_base(), n)
    deadline = time.monotonic() + 30
    while not lock.try_acquire():
        if time.monotonic() > deadline:
            raise HarnessError(f"{NAME_PREFIX}{n} is still held by another process")
        time.sleep(0.1)
    try:
        _clean_stale(target_base(), n)
    finally:
        lock.release()
