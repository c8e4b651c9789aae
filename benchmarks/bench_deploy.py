"""Deploy-side benchmarks on a real test server (tests/harness: systemd-nspawn, sshd, podman).

Run as root: .venv/bin/python benchmarks/bench_deploy.py [--runs N] [--only PART ...]
                                                          [--at-commit REV] [--quiet F]

1. bytes: stdin bytes of `bundle push HOST --json` (its `bytes_sent`) for a first push and for a
   push after changing one config file, for the shipped vps1 stack and a 60-service stack, with
   a breakdown of where the bytes go (reconstructed from the generations the way
   builder/deploy/push.py sends them, and checked against `bytes_sent`) and the bytes the host-side
   veth carried towards the server.
2. activate: wall time of `bundle activate` (first activation), `bundle switch` (one change) and
   `bundle rollback` for a two-container stack of busybox web servers.
3. ansible: wall time of a first deploy and of a one-change deploy of 15 web containers, each
   with one config file, by `bundle switch` and by `ansible-playbook` (benchmarks/ansible/)
   against the same server, and where the time of a one-change `bundle switch` goes. Needs
   ansible-core in ANSIBLE_VENV (default /var/tmp/bench-ansible-venv):
   python3 -m venv DIR && DIR/bin/pip install ansible-core.

bundle is measured as built (health gate with its 2 s settle window, dead-man confirmation)
and with `health_settle = 0` and `confirm_timeout = 0`, which does the work the playbook does.
Every figure is the median of N runs of the real command (a new process each time). After
every deploy one page is fetched over HTTP from the server and compared with what it must say.
--at-commit REV measures builder/, activate/ and stacks/ as committed at REV, not the work tree.
Traffic goes only to the registry on this machine and to the test server's 10.200.N.x address.
Everything (server, registry, ssh control masters, temporary folders) is removed at the end,
also after an error. Results: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING, Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
# --at-commit runs this script again with BENCH_TREE = an export of that commit: builder/,
# activate/, stacks/ and the test server then come from there, not from the work tree
TREE = Path(os.environ.get("BENCH_TREE") or REPO)
sys.path.insert(0, str(TREE))

from bench_build import big_stack  # noqa: E402

if TYPE_CHECKING:
    from builder.bundle.store import Generation
    from tests.harness import Target

ANSIBLE_DIR = HERE / "ansible"
ANSIBLE_VENV = Path(os.environ.get("ANSIBLE_VENV", "/var/tmp/bench-ansible-venv"))
IMAGE = "registry.test:5000/bundle/web:1.0.0"
WEB_COUNT = 15
CHANGED = 7  # the service whose config file the one-change deploys edit
ANSIBLE_PAGES = "/srv/ansible-web"
# vps1 needs its secrets set before it can be pushed: a throwaway passphrase, a cheap KDF
SECRETS_ENV = {"BUNDLE_PASSPHRASE": "bench-only", "BUNDLE_SECRETS_KDF_LOG2N": "10"}


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


def wire_tx(target: Target) -> int:
    """Bytes the host sent to the server on its veth (IP packets, everything included)."""
    return int(Path(f"/sys/class/net/ve-{target.name}/statistics/tx_bytes").read_text())


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


# ---- 1. bytes of a push ------------------------------------------------------------------------


def gz_tar_size(entries: list[tuple[str, bytes]]) -> int:
    """Size of a gzip tar like builder/deploy/push.py writes (same format and level)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz", format=tarfile.GNU_FORMAT, compresslevel=6) as tar:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return len(raw.getvalue())


def switcher_install_size(gen: Generation, manifest: dict[str, Any]) -> int:
    files = {p: gen.read(p) for p in manifest["files"] if p.startswith("activate/")}
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz", format=tarfile.GNU_FORMAT) as tar:
        for path in sorted(files):
            info = tarfile.TarInfo(path)
            info.size = len(files[path])
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(files[path]))
    return len(raw.getvalue())


def hashes_in(gen: Generation | None) -> set[str]:
    return {e["sha256"] for e in gen.manifest()["files"].values()} if gen else set()


def breakdown(
    gen: Generation, previous: Generation | None, report: dict[str, Any]
) -> dict[str, int]:
    """Where the stdin bytes of one push go, computed the way builder/deploy/push.py sends them.

    The server holds exactly `previous` (or nothing) before the push. A report without `base`
    comes from a builder that predates bases and deltas (--at-commit of an older commit)."""
    from builder.deploy import push

    manifest = gen.manifest()
    hashes = hashes_in(gen)
    switcher = {e["sha256"] for p, e in manifest["files"].items() if p.startswith("activate/")}
    delta: bytes | None = None
    if "base" not in report:  # every hash asked, the full manifest, the switcher sent twice
        asked = hashes
        request = json.dumps(sorted(asked)).encode()
        missing = hashes - hashes_in(previous)
    else:
        base = previous if report["base"] else None
        delta = push.manifest_delta(base, gen) if base is not None else None
        asked = hashes - hashes_in(base)
        request = push.have_request(report["base"], asked)
        missing = asked - hashes_in(previous) - switcher
    skipped = report["already_present"] and "base" in report  # the check found it there
    if skipped:
        asked, request, missing = set(), b"", set()

    def receive_size(objects: set[str]) -> int:
        if skipped:
            return 0
        if delta is None:
            return len(push.stream(gen, manifest, objects))
        return len(push.stream(gen, manifest, objects, delta))

    by_hash: dict[str, str] = {}
    for path, entry in sorted(manifest["files"].items()):
        by_hash.setdefault(entry["sha256"], path)
    manifest_only = receive_size(set())
    parts = {
        "switcher install (gzip tar of activate/)": (
            switcher_install_size(gen, manifest) if report["switcher_sent"] else 0
        ),
        f"have: request naming {len(asked)} hashes": len(request),
        f"receive: gzip tar, {'delta' if delta else 'full'} manifest part": manifest_only,
        "receive: gzip tar, objects part": receive_size(missing) - manifest_only,
    }
    info = {
        "objects": len(missing),
        "objects raw bytes": sum(len(gen.read(by_hash[h])) for h in missing),
        "manifest.json raw bytes": len(gen.read("manifest.json")),
        "files in manifest": len(manifest["files"]),
    }
    if delta:
        info["manifest.delta.json raw bytes"] = len(delta)
    return {**parts, **{f"({k})": v for k, v in info.items()}}


def wireguard_keys() -> tuple[str, str]:
    """A throwaway WireGuard key pair (private, public), as `wg genkey | wg pubkey` makes."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    key = X25519PrivateKey.generate()
    raw = key.private_bytes_raw()
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.b64encode(raw).decode(), base64.b64encode(public).decode()


def secret_value(p: Project, host: str, name: str) -> str:
    """A throwaway value of the right shape. For a WireGuard private key, the stack's
    [wireguard] public_key is replaced with the matching one (in the copy of the stack)."""
    if "wireguard" in name and name.endswith("private_key"):
        private, public = wireguard_keys()
        toml = p.stacks / f"{host}.toml"
        text = re.sub(
            r'(\[wireguard\][^\[]*?public_key = ")[^"]*(")',
            lambda m: m.group(1) + public + m.group(2),
            toml.read_text(),
            count=1,
        )
        toml.write_text(text)
        return private + "\n"
    return f"bench-{name}\n"


def set_secrets(p: Project, host: str) -> None:
    """Give every secret the stack names a throwaway value, so its generations can be pushed."""
    built = p.json("build", host)
    gen = p.generation(host, built["generation"])
    names = sorted((gen.manifest().get("secrets") or {}).keys())
    for name in names:
        subprocess.run(
            [sys.executable, "-m", "builder.cli", "secrets", "set", host, name],
            input=secret_value(p, host, name),
            cwd=p.root,
            env={"PATH": "/usr/bin:/bin", "HOME": str(p.home), **SECRETS_ENV, **tree_env()},
            capture_output=True,
            text=True,
            check=True,
        )
    shutil.rmtree(p.root / "bundles")


def change_one_config(stacks: Path, rel: str, line: str) -> None:
    path = stacks / "templates" / rel
    path.write_text(path.read_text() + line)


def push_pair(p: Project, target: Target, host: str, change: Callable[[], None]) -> dict[str, Any]:
    target.ssh("rm -rf /var/lib/bundle")  # a server that has never seen a bundle
    p.json("build", host)
    tx0 = wire_tx(target)
    first = p.json("push", host)
    tx1 = wire_tx(target)
    change()
    p.json("build", host)
    stat = p.json("diff", host, "1", "2")
    tx2 = wire_tx(target)
    second = p.json("push", host)
    tx3 = wire_tx(target)
    again = p.json("push", host, "--generation", "2")  # nothing missing: the floor of a push
    tx4 = wire_tx(target)
    if len(stat["files"]) != 1 or second["objects_sent"] != 1 or not again["already_present"]:
        raise RuntimeError(f"{host}: expected one changed file: {stat} {second} {again}")
    gen1, gen2 = p.generation(host, 1), p.generation(host, 2)
    b1 = breakdown(gen1, None, first)
    b2 = breakdown(gen2, gen1, second)
    b3 = breakdown(gen2, gen2, again)
    for report, parts in ((first, b1), (second, b2), (again, b3)):
        counted = sum(v for k, v in parts.items() if not k.startswith("("))
        if counted != report["bytes_sent"]:
            raise RuntimeError(f"breakdown {counted} != bytes_sent {report['bytes_sent']}")
    return {
        "host": host,
        "first": first,
        "second": second,
        "wire_first": tx1 - tx0,
        "wire_second": tx3 - tx2,
        "again": again,
        "wire_again": tx4 - tx3,
        "diff": stat,
        "breakdown_first": b1,
        "breakdown_second": b2,
        "breakdown_again": b3,
        "argv_bootstrap": len(bootstrap_script().encode()),
    }


def bootstrap_script() -> str:
    from builder.deploy.remote import BOOTSTRAP

    return BOOTSTRAP


def bench_bytes(work: Path, target: Target, home: Path) -> list[dict[str, Any]]:
    results = []
    vps1 = make_project(work, "vps1", home)
    shutil.rmtree(vps1.stacks)
    shutil.copytree(TREE / "stacks", vps1.stacks)
    set_secrets(vps1, "vps1")
    results.append(
        push_pair(
            vps1,
            target,
            "vps1",
            lambda: change_one_config(
                vps1.stacks, "nextcloud/zz-bundle.ini.j2", "max_execution_time = 600\n"
            ),
        )
    )
    big = make_project(work, "big", home)
    (big.stacks / "templates").mkdir()
    # bench_build's page, plus a line that only svc7's copy has, so one rendered file can change
    (big.stacks / "templates/page.j2").write_text(
        "<h1>{{ vars.greeting }} from {{ service }}</h1>\n"
        "{% if service == 'svc7' %}<p>{{ vars.note }}</p>\n{% endif %}"
    )
    text = big_stack(60, "1.27.3").replace(
        'greeting = "hi"\n', 'greeting = "hi"\nnote = "one"\n', 1
    )
    (big.stacks / "big.toml").write_text(text)

    def change_big() -> None:
        path = big.stacks / "big.toml"
        path.write_text(path.read_text().replace('note = "one"', 'note = "two"', 1))

    results.append(push_pair(big, target, "big", change_big))
    # the server keeps what it received; the other parts use their own state
    target.ssh("rm -rf /var/lib/bundle")
    return results


# ---- 2. activate, switch, rollback -------------------------------------------------------------


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


def bench_activate(work: Path, target: Target, home: Path, runs: int) -> dict[str, Any]:
    return {
        variant: activate_variant(work / f"web1-{i}", target, home, runs, keys)
        for i, (variant, keys) in enumerate(VARIANTS.items())
    }


def activate_variant(
    work: Path, target: Target, home: Path, runs: int, keys: str
) -> dict[str, Any]:
    from tests.server.conftest import WEB_STACK

    p = make_project(work, "web1", home)
    (p.stacks / "templates/web").mkdir(parents=True)
    (p.stacks / "web1.toml").write_text(with_host_keys(WEB_STACK, keys))
    (p.stacks / "templates/web/index.html.j2").write_text(
        "{{ vars.message }} from {{ host.name }}\n"
    )
    p.json("build", "web1")
    first = Figure("bundle activate (first activation)")
    switch = Figure("bundle switch (one config file changed)")
    rollback = Figure("bundle rollback")
    server_seconds: dict[str, list[float]] = {"first": [], "switch": [], "rollback": []}
    for _ in range(runs):
        reset_server(target)
        p.json("push", "web1", "--generation", "1")
        t, report = p.timed_json("activate", "web1", "--generation", "1")
        if report.get("result") != "ok":
            raise RuntimeError(f"activate: {report}")
        first.times.append(t)
        server_seconds["first"].append(report.get("seconds", float("nan")))
        expect_page(target, 8080, "first from web1\n")
    toml = p.stacks / "web1.toml"
    for i in range(runs):
        text = re.sub(r'message = "[^"]*"', f'message = "change {i}"', toml.read_text())
        toml.write_text(text)
        settle(target)
        t, report = p.timed_json("switch", "web1")
        if report.get("result") != "ok" or report["plan"]["restart"] != ["web.container"]:
            raise RuntimeError(f"switch: {report}")
        switch.times.append(t)
        server_seconds["switch"].append(report.get("seconds", float("nan")))
        expect_page(target, 8080, f"change {i} from web1\n")
        settle(target)
        t, report = p.timed_json("rollback", "web1")
        if report.get("result") != "ok" or report["plan"]["restart"] != ["web.container"]:
            raise RuntimeError(f"rollback: {report}")
        rollback.times.append(t)
        server_seconds["rollback"].append(report.get("seconds", float("nan")))
        # generation 1 says "first", generation k > 1 was built for "change k-2"
        back = "first" if report["to"] == 1 else f"change {report['to'] - 2}"
        expect_page(target, 8080, f"{back} from web1\n")
    reset_server(target)
    return {"figures": [first, switch, rollback], "server_seconds": server_seconds}


# ---- 3. bundle vs ansible-playbook, 15 services ------------------------------------------------


def web15_stack() -> str:
    out = ['[host]\nname = "web15"\naddress = "web15-bench"\n']
    for i in range(WEB_COUNT):
        out.append(
            f'[containers.web{i}]\nimage = "registry.test:5000/bundle/web"\nversion = "1.0.0"\n'
            f'ports = ["0.0.0.0:{8080 + i}:8080"]\n'
            f'configs = [{{ template = "web/web{i}.html.j2", mount = "/www/index.html" }}]\n'
        )
    return "\n".join(out)


def write_pages(pages: Path, changed_version: int = 1) -> None:
    pages.mkdir(parents=True, exist_ok=True)
    for i in range(WEB_COUNT):
        version = changed_version if i == CHANGED else 1
        (pages / f"web{i}.html.j2").write_text(f"{{{{ service }}}} says version {version}\n")


def page_text(i: int, version: int = 1) -> str:
    return f"web{i} says version {version}\n"


@dataclass
class Ansible:
    work: Path
    target: Target
    pages: Path

    def __post_init__(self) -> None:
        self.control = Path(tempfile.mkdtemp(prefix="cp-", dir="/tmp"))  # short socket paths
        self.home = self.work / "ansible-home"
        self.home.mkdir()
        self.inventory = self.work / "inventory.ini"
        text = Template((ANSIBLE_DIR / "inventory.ini.in").read_text()).substitute(
            host=self.target.host,
            port=self.target.port,
            key=self.target.key_path,
            known_hosts=self.target.known_hosts_path,
        )
        self.inventory.write_text(text)

    def env(self) -> dict[str, str]:
        return {
            "PATH": f"{ANSIBLE_VENV}/bin:/usr/bin:/bin",
            "HOME": str(self.home),
            "ANSIBLE_CONFIG": str(ANSIBLE_DIR / "ansible.cfg"),
            "ANSIBLE_SSH_CONTROL_PATH_DIR": str(self.control),
            "ANSIBLE_LOCAL_TEMP": str(self.home / "tmp"),
            "ANSIBLE_NOCOLOR": "1",
            "LANG": "C.UTF-8",
        }

    def version(self) -> str:
        out = subprocess.run(
            [str(ANSIBLE_VENV / "bin/ansible-playbook"), "--version"],
            capture_output=True, text=True, env=self.env(), check=True,
        ).stdout  # fmt: skip
        return out.splitlines()[0].strip()

    def play(self) -> tuple[float, str]:
        argv = [
            str(ANSIBLE_VENV / "bin/ansible-playbook"),
            "-i", str(self.inventory),
            "-e", f"pages_dir={self.pages}",
            "-e", f"web_count={WEB_COUNT}",
            str(ANSIBLE_DIR / "web.yml"),
        ]  # fmt: skip
        QUIET.wait()
        t0 = time.perf_counter()
        result = subprocess.run(argv, capture_output=True, text=True, env=self.env(), check=False)
        elapsed = time.perf_counter() - t0
        if result.returncode != 0:
            raise RuntimeError(
                f"ansible-playbook:\n{result.stdout[-4000:]}\n{result.stderr[-3000:]}"
            )
        recap = [ln for ln in result.stdout.splitlines() if "ok=" in ln and "changed=" in ln]
        return elapsed, (recap[-1].split(":", 1)[1].strip() if recap else "")

    def close(self) -> None:
        """End the ControlPersist masters this run started (by their sockets), then the folder."""
        for sock in self.control.iterdir():
            subprocess.run(
                ["ssh", "-F", "/dev/null", "-S", str(sock), "-O", "exit", "x"],
                capture_output=True, check=False, timeout=10,
            )  # fmt: skip
        shutil.rmtree(self.control, ignore_errors=True)


def check_units_equivalent(target: Target, gen: Generation) -> None:
    """The units Ansible wrote say what bundle's say, apart from the header and the page path."""
    for i in range(WEB_COUNT):
        ours = gen.read(f"units/quadlet/web{i}.container").decode().splitlines()[1:]
        theirs = target.read_file(f"/etc/containers/systemd/web{i}.container").splitlines()[1:]
        ours = [
            ln.replace(
                f"/var/lib/bundle/current/files/web{i}/web{i}.html", f"{ANSIBLE_PAGES}/web{i}.html"
            )
            for ln in ours
        ]
        if ours != theirs:
            raise RuntimeError(f"web{i}.container differs:\n{ours}\n{theirs}")


class TimedTransport:
    """Wraps the SSH transport of an in-process switch; records each remote call's time."""

    def __init__(self, inner: Any, times: dict[str, float]) -> None:
        self.inner = inner
        self.times = times

    def run(self, argv: list[str], stdin: Any = None, cwd: str | None = None, **kw: Any) -> Any:
        if argv[:2] == ["python3", "-c"]:
            label = f"remote: bootstrap {argv[3]} (python3 -c)"
        else:
            label = f"remote: python3 -m activate {argv[argv.index('activate') + 1]}"
        t0 = time.perf_counter()
        try:
            return self.inner.run(argv, stdin=stdin, cwd=cwd, **kw)
        finally:
            self.times[label] = self.times.get(label, 0.0) + time.perf_counter() - t0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def switch_phases(p: Project, host: str) -> dict[str, float]:
    """Where the time of `bundle switch` goes: builder.deploy.deployer's own connect + do_switch, in
    this process, with every remote call (and any second connection) timed."""
    from builder.bundle.paths import Paths
    from builder.deploy.deployer import connect, do_switch

    times: dict[str, float] = {}

    def add(label: str, seconds: float) -> None:
        times[label] = times.get(label, 0.0) + seconds

    old_home = os.environ.get("HOME")
    os.environ["HOME"] = str(p.home)
    try:
        paths = Paths(p.stacks, p.root / "bundles")
        t0 = time.perf_counter()
        with connect(paths, host, None, False) as server:
            t1 = time.perf_counter()
            add("connect (TCP, key exchange, auth; paramiko imported)", t1 - t0)
            server.transport = TimedTransport(server.transport, times)  # type: ignore[assignment]
            first_reopen = getattr(server, "reopen", None)
            if first_reopen is not None:

                def reopen(seconds: float) -> Any:
                    t = time.perf_counter()
                    fresh = first_reopen(seconds)
                    add("second connection (the switch's confirmation)", time.perf_counter() - t)
                    fresh.transport = TimedTransport(fresh.transport, times)
                    return fresh

                server.reopen = reopen
            report = do_switch(paths, server, False)
            total = time.perf_counter() - t1
        remote = sum(v for k, v in times.items() if not k.startswith("connect"))
        add("local work (build, hashing, gzip) and waiting between calls", total - remote)
        times["  the switcher's own time (inside `activate` above)"] = report.get(
            "seconds", float("nan")
        )
    finally:
        if old_home is None:
            del os.environ["HOME"]
        else:
            os.environ["HOME"] = old_home
    return times


START_PROBE = r"""
units=$(for i in $(seq 0 %d); do printf 'web%%d.service ' $i; done)
ms() { echo $(( $(date +%%s%%N) / 1000000 )); }
systemctl stop $units; systemctl reset-failed
t0=$(ms); for u in $units; do systemctl start $u; done; t1=$(ms)
systemctl stop $units; systemctl reset-failed
t2=$(ms); systemctl start $units; t3=$(ms)
systemctl reset-failed
echo $((t1 - t0)) $((t3 - t2))
"""


def start_probe(target: Target, runs: int) -> tuple[Figure, Figure]:
    """On the server: 15 `systemctl start` one after the other vs one call with all 15."""
    one_by_one = Figure(f"{WEB_COUNT} x systemctl start UNIT (one after the other)")
    together = Figure(f"systemctl start UNIT1 ... UNIT{WEB_COUNT} (one call)")
    for _ in range(runs):
        QUIET.wait()
        a, b = target.ssh(START_PROBE % (WEB_COUNT - 1)).stdout.split()
        one_by_one.times.append(int(a) / 1000)
        together.times.append(int(b) / 1000)
    return one_by_one, together


def bundle_web15(
    work: Path, target: Target, home: Path, runs: int, keys: str, probe: bool
) -> dict[str, Any]:
    """`bundle switch` of the 15 services: first deploys from nothing, one-change switches."""
    p = make_project(work, "web15", home)
    pages = p.stacks / "templates/web"
    (p.stacks / "web15.toml").write_text(with_host_keys(web15_stack(), keys))
    changed_port = 8080 + CHANGED
    out: dict[str, Any] = {
        "first": Figure("bundle switch, first deploy"),
        "change": Figure("bundle switch, one config file changed"),
        "first_server": [],
        "change_server": [],
    }
    for _ in range(runs):
        reset_server(target)
        shutil.rmtree(p.root / "bundles", ignore_errors=True)
        write_pages(pages)
        t, report = p.timed_json("switch", "web15")
        if report.get("result") != "ok" or len(report["plan"]["start"]) != WEB_COUNT:
            raise RuntimeError(f"switch: {report}")
        out["first"].times.append(t)
        out["first_server"].append(report.get("seconds", float("nan")))
        expect_page(target, changed_port, page_text(CHANGED))
    all_pages(target, 1)
    if probe:
        out["start_probe"] = start_probe(target, runs)
        all_pages(target, 1)
    out["gen1"] = p.generation("web15", 1)
    for r in range(runs):
        write_pages(pages, r + 2)
        settle(target)
        t, report = p.timed_json("switch", "web15")
        if report["plan"]["restart"] != [f"web{CHANGED}.container"]:
            raise RuntimeError(f"switch restarted {report['plan']}")
        out["change"].times.append(t)
        out["change_push"] = report["push"]
        out["change_server"].append(report.get("seconds", float("nan")))
        expect_page(target, changed_port, page_text(CHANGED, r + 2))
    all_pages(target, runs + 1)
    phases: dict[str, list[float]] = {}
    for r in range(runs):
        version = runs + 2 + r
        write_pages(pages, version)
        settle(target)
        QUIET.wait()
        for k, v in switch_phases(p, "web15").items():
            phases.setdefault(k, []).append(v)
        expect_page(target, changed_port, page_text(CHANGED, version))
    out["phases"] = {k: statistics.median(v) for k, v in phases.items()}
    return out


def all_pages(target: Target, version: int) -> None:
    for i in range(WEB_COUNT):
        expect_page(target, 8080 + i, page_text(i, version if i == CHANGED else 1))


def bench_vs_ansible(work: Path, target: Target, home: Path, runs: int) -> dict[str, Any]:
    bundle = {
        variant: bundle_web15(work / f"web15-{i}", target, home, runs, keys, probe=i == 0)
        for i, (variant, keys) in enumerate(VARIANTS.items())
    }
    pages = work / "ansible-pages"
    changed_port = 8080 + CHANGED
    out: dict[str, Any] = {
        "bundle": bundle,
        "first": Figure("ansible-playbook, first deploy"),
        "change": Figure("ansible-playbook, one config file changed"),
    }
    ansible = Ansible(work, target, pages)
    try:
        out["version"] = ansible.version()
        for _ in range(runs):
            reset_server(target)
            write_pages(pages)
            t, recap = ansible.play()
            out["first"].times.append(t)
            out["first_recap"] = recap
            expect_page(target, changed_port, page_text(CHANGED))
        all_pages(target, 1)
        check_units_equivalent(target, bundle["defaults"]["gen1"])
        for r in range(runs):
            write_pages(pages, r + 2)
            settle(target)
            t, recap = ansible.play()
            out["change"].times.append(t)
            out["change_recap"] = recap
            expect_page(target, changed_port, page_text(CHANGED, r + 2))
        all_pages(target, runs + 1)
        settle(target)
        out["noop"] = ansible.play()
    finally:
        ansible.close()
    reset_server(target)
    return out


# ---- main --------------------------------------------------------------------------------------


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


def print_bytes(results: list[dict[str, Any]]) -> None:
    print("\n## bytes sent by `bundle push` (stdin bytes, the report's bytes_sent)")
    print(
        f"{'stack':<8} {'files':>6} {'first push':>11} {'one change':>11} {'ratio':>8}  wire (veth tx) first / one change"
    )
    for r in results:
        a, b = r["first"]["bytes_sent"], r["second"]["bytes_sent"]
        print(
            f"{r['host']:<8} {r['first']['files']:>6} {a:>11} {b:>11} {b / a:>8.2%}  "
            f"{r['wire_first']} / {r['wire_second']}"
        )
    for r in results:
        print(
            f"{r['host']}: push of a generation the server already has: "
            f"{r['again']['bytes_sent']} bytes stdin, {r['wire_again']} bytes on the wire"
        )
    for r in results:
        first, second = r["first"]["bytes_sent"], r["second"]["bytes_sent"]
        print(
            f"{r['host']}: one-change push sent against base {r['second'].get('base')}: "
            f"{second} bytes, {second / first:.2%} of the first push"
        )
    for r in results:
        changed = ", ".join(f"{d['path']} ({d['status']})" for d in r["diff"]["files"])
        print(f"\n{r['host']}: generations 1 -> 2 differ in: {changed}")
        print(
            f"  python3 -c BOOTSTRAP on the command line of each push (not stdin): {r['argv_bootstrap']} bytes"
        )
        labels = (("first push", "first"), ("one change", "second"), ("again", "again"))
        for label, key in labels:
            print(f"  {label}:")
            for k, v in r[f"breakdown_{key}"].items():
                print(f"    {k:<52} {v:>8}")


def run_at_commit(rev: str) -> int:
    """Export REV to a temporary folder and run this script again against it."""
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--verify", f"{rev}^{{commit}}"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    tree = Path(tempfile.mkdtemp(prefix="bundle-bench-tree-"))
    try:
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", "--format=tar", commit],
            capture_output=True, check=True,
        ).stdout  # fmt: skip
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(tree, filter="data")
        argv = [a for a in sys.argv[1:] if a != "--at-commit" and a != rev]
        argv = [a for a in argv if not a.startswith("--at-commit=")]
        env = {**os.environ, "BENCH_TREE": str(tree), "BENCH_COMMIT": commit}
        env["PYTHONPATH"] = str(tree)
        return subprocess.run([sys.executable, __file__, *argv], env=env, check=False).returncode
    finally:
        shutil.rmtree(tree, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--quiet",
        type=float,
        default=QUIET.threshold,
        metavar="F",
        help="start a timed run only when the CPUs were at most this busy for 1 s (1: never wait)",
    )
    parser.add_argument(
        "--only", nargs="+", choices=("bytes", "activate", "ansible"),
        default=["bytes", "activate", "ansible"],
    )  # fmt: skip
    parser.add_argument(
        "--at-commit",
        metavar="REV",
        help="measure builder/, activate/ and stacks/ as committed at REV (git archive), "
        "not the work tree",
    )
    args = parser.parse_args()
    QUIET.threshold = args.quiet
    if args.at_commit and "BENCH_TREE" not in os.environ:
        sys.exit(run_at_commit(args.at_commit))
    from tests.harness import Registry, Target

    if "ansible" in args.only and not (ANSIBLE_VENV / "bin/ansible-playbook").exists():
        sys.exit(f"{ANSIBLE_VENV}/bin/ansible-playbook is missing; see the docstring")
    work = Path(tempfile.mkdtemp(prefix="bundle-bench-deploy-"))
    results: dict[str, Any] = {}
    try:
        with Registry.start() as reg:
            reg.push_busybox("bundle/web", "1.0.0")
            with Target(registry=reg) as target:
                home = make_home(
                    work,
                    target,
                    ["vps1.example.org", "big.example.org", "web1-test", "web15-bench"],
                )
                versions = {
                    "podman (server)": target.ssh("podman --version").stdout.strip(),
                    "systemd (server)": target.ssh("systemctl --version").stdout.splitlines()[0],
                    "python3 (server)": target.ssh("python3 --version").stdout.strip(),
                    "sshd (server)": target.ssh("sshd -V 2>&1 || true").stdout.strip(),
                }
                target.ssh(f"podman pull -q {IMAGE}")  # every timed run starts with the image there
                results["load_before"] = Path("/proc/loadavg").read_text().split()[:3]
                if "bytes" in args.only:
                    results["bytes"] = bench_bytes(work, target, home)
                if "activate" in args.only:
                    results["activate"] = bench_activate(work, target, home, args.runs)
                if "ansible" in args.only:
                    results["ansible"] = bench_vs_ansible(work, target, home, args.runs)
                results["load_after"] = Path("/proc/loadavg").read_text().split()[:3]
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"machine: {machine()}")
    commit = os.environ.get("BENCH_COMMIT")
    print(f"code measured: {f'commit {commit}' if commit else f'the work tree at {REPO}'}")
    import builder

    print(f"builder imported from {Path(builder.__file__).parent}")
    for k, v in versions.items():
        print(f"{k}: {v}")
    print(
        f"load average (1, 5, 15 min) at the start: {' '.join(results['load_before'])}, "
        f"at the end: {' '.join(results['load_after'])}"
    )
    print(
        f"before each timed run waited for CPUs <= {QUIET.threshold:.0%} busy: "
        f"{QUIET.runs} runs, {QUIET.waited:.0f} s waited in all, "
        f"{QUIET.gave_up} started busy after {QUIET.max_wait:.0f} s"
    )
    print(f"runs per figure: {args.runs}; median (min–max) of wall time, a new process each run")
    if "bytes" in results:
        print_bytes(results["bytes"])
    if "activate" in results:
        print("\n## two busybox web containers + a volume (tests/server WEB_STACK)")
        for variant, act in results["activate"].items():
            print(f"bundle {variant} ({variant_keys(variant)}):")
            for f, key in zip(act["figures"], ("first", "switch", "rollback"), strict=True):
                server = statistics.median(act["server_seconds"][key])
                print(f"    {f.name:<44} {f.cell():<28} switcher's own time: {server:.2f} s")
    if "ansible" in results:
        print_vs_ansible(results["ansible"])


def print_vs_ansible(res: dict[str, Any]) -> None:
    print(f"\n## {WEB_COUNT} web containers, one config file each: bundle vs {res['version']}")
    print(f"{res['first'].name:<52} {res['first'].cell()}")
    print(f"{res['change'].name:<52} {res['change'].cell()}")
    t, recap = res["noop"]
    print(f"{'ansible-playbook, nothing to change':<52} {fmt(t)} (one run)")
    print(f"ansible recap, first deploy: {res['first_recap']}")
    print(f"ansible recap, one change:   {res['change_recap']}")
    print(f"ansible recap, no change:    {recap}")
    for variant, b in res["bundle"].items():
        print(f"\nbundle {variant} ({variant_keys(variant)}):")
        for kind in ("first", "change"):
            f = b[kind]
            ratio = res[kind].median / f.median
            server = statistics.median(b[f"{kind}_server"])
            print(
                f"    {f.name:<44} {f.cell():<28} ansible/bundle {ratio:5.1f}x   "
                f"switcher's own time {server:.2f} s"
            )
        print("    one-change `bundle switch`, in-process, median per phase:")
        for k, v in b["phases"].items():
            print(f"        {k:<62} {v * 1000:6.0f} ms")
        push = b.get("change_push", {})
        print(
            f"    one-change push: {push.get('objects_sent')} object(s), "
            f"{push.get('bytes_sent')} bytes"
        )
        for f in b.get("start_probe", ()):
            print(f"    on the server: {f.name:<58} {f.cell()}")


if __name__ == "__main__":
    main()
