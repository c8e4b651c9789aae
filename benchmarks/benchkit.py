"""What the deploy benchmarks share: the code under test (the work tree or an exported commit),
a project whose hosts are test servers, waiting for a quiet machine, figures and their format.

--at-commit REV exports REV into a temporary tree and runs the calling script again with
BENCH_TREE set to it: builder/, activate/, stacks/ and the test server then come from there.
"""

from __future__ import annotations

import io
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
# --at-commit runs the script again with BENCH_TREE = an export of that commit: builder/,
# activate/, stacks/ and the test server then come from there, not from the work tree
TREE = Path(os.environ.get("BENCH_TREE") or REPO)
if str(TREE) not in sys.path:
    sys.path.insert(0, str(TREE))

if TYPE_CHECKING:
    from builder.bundle.store import Generation
    from tests.harness import Target

ANSIBLE_VENV = Path(os.environ.get("ANSIBLE_VENV", "/var/tmp/bench-ansible-venv"))
ANSIBLE_INSTALL = f"python3 -m venv {ANSIBLE_VENV} && {ANSIBLE_VENV}/bin/pip install ansible-core"
IMAGE = "registry.test:5000/bundle/web:1.0.0"
ANSIBLE_PAGES = "/srv/ansible-web"
# vps1 needs its secrets set before it can be pushed: a throwaway passphrase, a cheap KDF
SECRETS_ENV = {"BUNDLE_PASSPHRASE": "bench-only", "BUNDLE_SECRETS_KDF_LOG2N": "10"}


def ansible_missing() -> str | None:
    """The one line to print when ansible-playbook is not where the benchmarks look for it."""
    if (ANSIBLE_VENV / "bin/ansible-playbook").exists():
        return None
    return f"{ANSIBLE_VENV}/bin/ansible-playbook is missing; install it: {ANSIBLE_INSTALL}"


# ---- other work on this machine ---------------------------------------------------------------


def _cpu_times() -> tuple[int, int]:
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields[:8]) - idle, sum(fields[:8])


@dataclass
class Quiet:
    """Waits, before each timed run, until the machine's CPUs are mostly idle.

    Other test runs may share this machine; a timed run that starts while they keep the CPUs
    busy measures them too. `threshold` is the busy fraction of all CPUs over one second."""

    threshold: float = 0.4
    max_wait: float = 120.0
    waited: float = 0.0
    runs: int = 0
    gave_up: int = 0

    def wait(self) -> None:
        self.runs += 1
        t0 = time.monotonic()
        while True:
            b0, t_0 = _cpu_times()
            time.sleep(1.0)
            b1, t_1 = _cpu_times()
            if (b1 - b0) / max(1, t_1 - t_0) <= self.threshold:
                break
            if time.monotonic() - t0 > self.max_wait:
                self.gave_up += 1
                break
        self.waited += time.monotonic() - t0


QUIET = Quiet()


# ---- a project on this machine whose hosts are the test server -------------------------------


@dataclass
class Project:
    root: Path
    home: Path

    @property
    def stacks(self) -> Path:
        return self.root / "stacks"

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {"PATH": "/usr/bin:/bin", "NO_COLOR": "1", "HOME": str(self.home)}
        env.update(SECRETS_ENV | tree_env())
        result = subprocess.run(
            [sys.executable, "-m", "builder.cli", *args],
            cwd=self.root,
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"bundle {' '.join(args)}:\n{result.stdout}\n{result.stderr}")
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "--json").stdout)

    def timed_json(self, *args: str) -> tuple[float, Any]:
        QUIET.wait()
        t0 = time.perf_counter()
        out = self.run(*args, "--json").stdout
        return time.perf_counter() - t0, json.loads(out)

    def generation(self, host: str, number: int) -> Generation:
        from builder.bundle.store import Store

        return Store(self.root / "bundles", host).get(number)


def tree_env() -> dict[str, str]:
    return {"PYTHONPATH": str(TREE)} if "BENCH_TREE" in os.environ else {}


def make_home(work: Path, target: Target, aliases: list[str]) -> Path:
    """A HOME whose ~/.ssh/config sends every alias to the test server, its host key pinned."""
    home = work / "home"
    ssh = home / ".ssh"
    ssh.mkdir(parents=True, mode=0o700)
    key = ssh / "id_test"
    shutil.copy(target.key_path, key)
    key.chmod(0o600)
    (ssh / "config").write_text(
        "".join(
            f"Host {a}\n  HostName {target.host}\n  Port {target.port}\n  User root\n"
            f"  IdentityFile {key}\n"
            for a in aliases
        )
    )
    shutil.copy(target.known_hosts_path, ssh / "known_hosts")
    return home


def make_project(work: Path, name: str, home: Path) -> Project:
    root = work / name
    (root / "stacks").mkdir(parents=True)
    return Project(root, home)


def fetch(target: Target, port: int, tries: int = 100) -> str:
    """GET / from the server; a container just started may need a moment to listen."""
    last: Exception | None = None
    for _ in range(tries):
        try:
            with urllib.request.urlopen(target.url(port, "/"), timeout=2) as r:
                return r.read().decode()
        except OSError as exc:
            last = exc
            time.sleep(0.05)
    raise RuntimeError(f"{target.url(port, '/')} did not answer: {last}")


def expect_page(target: Target, port: int, text: str) -> None:
    got = fetch(target, port)
    if got != text:
        raise RuntimeError(f"port {port} serves {got!r}, expected {text!r}")


@dataclass
class Figure:
    name: str
    times: list[float] = field(default_factory=list)

    def cell(self) -> str:
        if not self.times:
            return "–"
        med = statistics.median(self.times)
        return f"{fmt(med)} ({fmt(min(self.times))}–{fmt(max(self.times))})"

    @property
    def median(self) -> float:
        return statistics.median(self.times)


def fmt(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"


# ---- the server between runs ------------------------------------------------------------------


def reset_server(target: Target) -> None:
    """Back to a server without any of our units, containers, volumes or state.

    The switcher runs each activation as a transient unit named after the generation
    (bundle-activate-N); wait until the last one is gone, or the next first deploy of
    generation N finds the name taken."""
    target.ssh(
        "for i in $(seq 100); do "
        "systemctl list-units --all --no-legend 'bundle-activate-*' | grep -q . || break; "
        "sleep 0.1; done; "
        "cd /etc/containers/systemd 2>/dev/null && "
        "units=$(ls | sed -n 's/\\.container$/.service/p; s/\\.volume$/-volume.service/p'); "
        '[ -z "$units" ] || systemctl stop $units; '
        "find /etc/containers/systemd -maxdepth 1 -type f -delete; systemctl daemon-reload; systemctl reset-failed; "
        f"rm -rf /var/lib/bundle {ANSIBLE_PAGES}; podman volume prune -f >/dev/null; true"
    )


def settle(target: Target) -> None:
    """Before each timed run: forget systemd's start-rate counters (untimed, for both tools).

    Every switch and rollback restarts a unit; five restarts of one unit within 10 s hit
    systemd's default StartLimitBurst, and the sixth start is refused. Runs of a benchmark
    follow each other faster than deploys do in real life."""
    target.ssh("systemctl reset-failed")


# bundle as configured by default (the health gate waits health_settle = 2 s for every unit to
# stay up; the server waits for the deployer's confirmation over a new connection), and with
# both turned off: the same work as the Ansible playbook, which checks neither.
VARIANTS = {
    "defaults": "",
    "no waits": "health_settle = 0\nconfirm_timeout = 0\n",
}


def variant_keys(variant: str) -> str:
    keys = VARIANTS[variant].strip().replace("\n", ", ")
    return f"[host] {keys}" if keys else "as built"


def with_host_keys(stack: str, keys: str) -> str:
    return stack.replace("[host]\n", "[host]\n" + keys, 1)


def machine() -> str:
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = int(Path("/proc/meminfo").read_text().split()[1]) // (1024 * 1024)
    return (
        f"{os.cpu_count()} cores {cpu}, {mem} GiB, {platform.system()} {platform.release()}, "
        f"CPython {platform.python_version()}"
    )


def export_commit(rev: str) -> tuple[str, Path]:
    """REV's full commit id and a temporary folder holding its files (git archive)."""
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--verify", f"{rev}^{{commit}}"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    tree = Path(tempfile.mkdtemp(prefix="bundle-bench-tree-"))
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", commit],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(tree, filter="data")
    return commit, tree


def run_at_commit(script: str, rev: str, argv: list[str]) -> int:
    """Export REV to a temporary folder and run SCRIPT again (with ARGV) against it."""
    commit, tree = export_commit(rev)
    try:
        env = {**os.environ, "BENCH_TREE": str(tree), "BENCH_COMMIT": commit}
        env["PYTHONPATH"] = str(tree)
        return subprocess.run([sys.executable, script, *argv], env=env, check=False).returncode
    finally:
        shutil.rmtree(tree, ignore_errors=True)


def without_at_commit(argv: list[str], rev: str) -> list[str]:
    out = [a for a in argv if not a.startswith("--at-commit=")]
    for i, a in enumerate(out):
        if a == "--at-commit" and i + 1 < len(out) and out[i + 1] == rev:
            return out[:i] + out[i + 2 :]
    return out
