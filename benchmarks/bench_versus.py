"""`bundle switch` vs `ansible-playbook` for N web containers, runs interleaved.

N busybox web containers (web0 … web{N-1}), each with one rendered page mounted read-only,
published on ports 8080 … 8080+N-1. Both tools write the same N quadlet units (checked line by
line) and the same pages from the same template files. Three servers booted from the same image,
one per column (ansible-playbook; bundle as built; bundle with `health_settle = 0` and
`confirm_timeout = 0`), so each column keeps its own state and the runs interleave: run 1 of
every column, then run 2 of every column, … (the first column of each round rotates).

Figures: first deploy (a server with none of it, for bundle no local bundles either), one
config file changed (page N//2), nothing changed. After every deploy one page is fetched over
HTTP and must say what the deploy wrote; after each phase, every page.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING, Any

from benchkit import (
    ANSIBLE_PAGES,
    ANSIBLE_VENV,
    IMAGE,
    QUIET,
    VARIANTS,
    Figure,
    Project,
    expect_page,
    fmt,
    make_home,
    make_project,
    reset_server,
    settle,
    variant_keys,
    with_host_keys,
)

if TYPE_CHECKING:
    from builder.bundle.store import Generation
    from tests.harness import Registry, Target

ANSIBLE_DIR = Path(__file__).resolve().parent / "ansible"
KINDS = ("first", "change", "noop")


@dataclass(frozen=True)
class Web:
    """The stack both tools deploy: `count` web containers on host `web{count}`."""

    count: int

    @property
    def host(self) -> str:
        return f"web{self.count}"

    @property
    def address(self) -> str:
        return f"{self.host}-bench"

    @property
    def changed(self) -> int:
        return self.count // 2  # the service whose page a one-change deploy edits

    def stack(self, keys: str) -> str:
        out = [f'[host]\nname = "{self.host}"\naddress = "{self.address}"\n']
        for i in range(self.count):
            out.append(
                f'[containers.web{i}]\nimage = "registry.test:5000/bundle/web"\n'
                f'version = "1.0.0"\nports = ["0.0.0.0:{8080 + i}:8080"]\n'
                f'configs = [{{ template = "web/web{i}.html.j2", mount = "/www/index.html" }}]\n'
            )
        return with_host_keys("\n".join(out), keys)

    def write_pages(self, pages: Path, version: int = 1) -> None:
        pages.mkdir(parents=True, exist_ok=True)
        for i in range(self.count):
            v = version if i == self.changed else 1
            (pages / f"web{i}.html.j2").write_text(f"{{{{ service }}}} says version {v}\n")

    def page(self, i: int, version: int = 1) -> str:
        return f"web{i} says version {version if i == self.changed else 1}\n"

    def expect_changed(self, target: Target, version: int) -> None:
        expect_page(target, 8080 + self.changed, self.page(self.changed, version))

    def expect_all(self, target: Target, version: int) -> None:
        for i in range(self.count):
            expect_page(target, 8080 + i, self.page(i, version))


@dataclass
class Ansible:
    """ansible-playbook with benchmarks/ansible/: its inventory points at one test server."""

    work: Path
    target: Target
    pages: Path
    web: Web

    def __post_init__(self) -> None:
        self.control = Path(tempfile.mkdtemp(prefix="cp-", dir="/tmp"))  # short socket paths
        self.home = self.work / "ansible-home"
        self.home.mkdir(parents=True)
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
            "-e", f"web_count={self.web.count}",
            "-e", f"host_name={self.web.host}",
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


@dataclass
class AnsibleColumn:
    name: str
    target: Target
    web: Web
    work: Path
    times: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in KINDS})
    recaps: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.pages = self.work / "pages"
        self.ansible = Ansible(self.work, self.target, self.pages, self.web)

    def _play(self, kind: str) -> None:
        t, recap = self.ansible.play()
        self.times[kind].append(t)
        self.recaps[kind] = recap

    def first(self) -> None:
        reset_server(self.target)
        self.web.write_pages(self.pages)
        self._play("first")
        self.web.expect_changed(self.target, 1)

    def change(self, version: int) -> None:
        self.web.write_pages(self.pages, version)
        settle(self.target)
        self._play("change")
        self.web.expect_changed(self.target, version)

    def noop(self, version: int) -> None:
        settle(self.target)
        self._play("noop")
        if " changed=0 " not in f" {self.recaps['noop']} ":
            raise RuntimeError(f"ansible changed something with nothing to change: {self.recaps}")
        self.web.expect_changed(self.target, version)

    def close(self) -> None:
        self.ansible.close()


@dataclass
class BundleColumn:
    name: str
    target: Target
    web: Web
    work: Path
    keys: str
    times: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in KINDS})
    server_seconds: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in KINDS})
    last: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        home = make_home(self.work, self.target, [self.web.address])
        self.project: Project = make_project(self.work, self.web.host, home)
        self.pages = self.project.stacks / "templates/web"
        (self.project.stacks / f"{self.web.host}.toml").write_text(self.web.stack(self.keys))

    def _switch(self, kind: str) -> dict[str, Any]:
        t, report = self.project.timed_json("switch", self.web.host)
        if report.get("result") != "ok":
            raise RuntimeError(f"bundle switch ({kind}): {report}")
        self.times[kind].append(t)
        self.server_seconds[kind].append(report.get("seconds", float("nan")))
        self.last[kind] = {k: report.get(k) for k in ("plan", "push", "result", "seconds")}
        return report

    def first(self) -> None:
        reset_server(self.target)
        shutil.rmtree(self.project.root / "bundles", ignore_errors=True)
        self.web.write_pages(self.pages)
        report = self._switch("first")
        if len(report["plan"]["start"]) != self.web.count:
            raise RuntimeError(f"first deploy started {report['plan']}")
        self.web.expect_changed(self.target, 1)

    def change(self, version: int) -> None:
        self.web.write_pages(self.pages, version)
        settle(self.target)
        report = self._switch("change")
        if report["plan"]["restart"] != [f"web{self.web.changed}.container"]:
            raise RuntimeError(f"one-change switch restarted {report['plan']}")
        self.web.expect_changed(self.target, version)

    def noop(self, version: int) -> None:
        settle(self.target)
        report = self._switch("noop")
        plan = report.get("plan") or {}
        if plan.get("restart") or plan.get("start") or plan.get("stop"):
            raise RuntimeError(f"a switch with nothing changed did {plan}")
        self.web.expect_changed(self.target, version)

    def generation(self, number: int) -> Generation:
        return self.project.generation(self.web.host, number)

    def close(self) -> None:
        pass


Column = AnsibleColumn | BundleColumn


def columns_for(work: Path, targets: list[Target], web: Web) -> list[Column]:
    """The ansible column and one bundle column per variant, each on its own server."""
    if len(targets) != 1 + len(VARIANTS):
        raise ValueError(f"need {1 + len(VARIANTS)} servers, got {len(targets)}")
    cols: list[Column] = [AnsibleColumn("ansible", targets[0], web, work / f"{web.host}-ansible")]
    for i, (variant, keys) in enumerate(VARIANTS.items()):
        cols.append(
            BundleColumn(variant, targets[i + 1], web, work / f"{web.host}-bundle{i}", keys)
        )
    return cols


def rotated(cols: list[Column], r: int) -> list[Column]:
    k = r % len(cols)
    return cols[k:] + cols[:k]


def compare(
    work: Path,
    targets: list[Target],
    count: int,
    runs: int,
    first_runs: int,
    noop: bool,
    extras: bool = False,
) -> dict[str, Any]:
    """Every column's first deploy, one-change and no-change runs, interleaved.

    `first_runs` first deploys (at least one: it sets the server up), then `runs` one-change
    deploys, then `runs` no-change deploys when `noop`. `extras`: afterwards, where the time of a
    one-change switch goes, and starting the units one by one vs in one call, on the server."""
    web = Web(count)
    cols = columns_for(work, targets, web)
    ansible = cols[0]
    assert isinstance(ansible, AnsibleColumn)
    out: dict[str, Any] = {"services": count, "ansible_version": ansible.ansible.version()}
    try:
        for r in range(max(1, first_runs)):
            for c in rotated(cols, r):
                c.first()
        for c in cols:
            c.web.expect_all(c.target, 1)
        defaults = cols[1]
        assert isinstance(defaults, BundleColumn)
        check_units_equivalent(ansible.target, defaults.generation(1), web)
        for r in range(runs):
            for c in rotated(cols, r):
                c.change(r + 2)
        for c in cols:
            c.web.expect_all(c.target, runs + 1)
        for r in range(runs if noop else 0):
            for c in rotated(cols, r):
                c.noop(runs + 1)
        for c in cols:
            c.web.expect_all(c.target, runs + 1)
        if extras:
            out["extras"] = measure_extras(cols, runs, runs + 2)
    finally:
        for c in cols:
            c.close()
    for c in cols:
        entry: dict[str, Any] = {"times": {k: v for k, v in c.times.items() if v}}
        if isinstance(c, AnsibleColumn):
            entry["recaps"] = c.recaps
        else:
            entry["server_seconds"] = {k: v for k, v in c.server_seconds.items() if v}
            entry["last_report"] = c.last
        out[c.name] = entry
    out["columns"] = [c.name for c in cols]
    return out


def measure_extras(cols: list[Column], runs: int, version: int) -> dict[str, Any]:
    """Phases of a one-change switch per bundle column, then the start probe on one server.

    The phases come from the deployer's own functions called in this process; when the code
    measured has other ones, the reason is recorded instead (the figures above still hold)."""
    out: dict[str, Any] = {"phases": {}}
    bundles = [c for c in cols if isinstance(c, BundleColumn)]
    for c in bundles:
        try:
            out["phases"][c.name] = phases(c, runs, version)
        except Exception as exc:  # a diagnostic, not a figure
            out["phases"][c.name] = {"unavailable": f"{type(exc).__name__}: {exc}"[:300]}
        else:
            c.web.expect_all(c.target, version + runs - 1)
    one, together = start_probe(bundles[0].target, bundles[0].web.count, runs)
    out["start_probe"] = {one.name: one.times, together.name: together.times}
    return out


def check_units_equivalent(target: Target, gen: Generation, web: Web) -> None:
    """The units Ansible wrote say what bundle's say, apart from the header and the page path."""
    for i in range(web.count):
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


# ---- where the time of a one-change switch goes (in-process) ----------------------------------


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
        # do_switch returns a typed result now, a dict in older code (--at-commit)
        as_json = report if isinstance(report, dict) else report.to_json()
        times["  the switcher's own time (inside `activate` above)"] = as_json.get(
            "seconds", float("nan")
        )
    finally:
        if old_home is None:
            del os.environ["HOME"]
        else:
            os.environ["HOME"] = old_home
    return times


def phases(col: BundleColumn, runs: int, version: int) -> dict[str, float]:
    """Median time per phase of `runs` one-change switches, done in this process."""
    seen: dict[str, list[float]] = {}
    for r in range(runs):
        col.web.write_pages(col.pages, version + r)
        settle(col.target)
        QUIET.wait()
        for k, v in switch_phases(col.project, col.web.host).items():
            seen.setdefault(k, []).append(v)
        col.web.expect_changed(col.target, version + r)
    return {k: statistics.median(v) for k, v in seen.items()}


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


def start_probe(target: Target, count: int, runs: int) -> tuple[Figure, Figure]:
    """On the server: `count` x `systemctl start` one after the other vs one call with all."""
    one_by_one = Figure(f"{count} x systemctl start UNIT (one after the other)")
    together = Figure(f"systemctl start UNIT1 ... UNIT{count} (one call)")
    for _ in range(runs):
        QUIET.wait()
        a, b = target.ssh(START_PROBE % (count - 1)).stdout.split()
        one_by_one.times.append(int(a) / 1000)
        together.times.append(int(b) / 1000)
    return one_by_one, together


# ---- the servers, and the figures as text ------------------------------------------------------


@contextlib.contextmanager
def servers(reg: Registry, have: list[Target]) -> Iterator[list[Target]]:
    """One server per column: those in `have`, and more booted here (and removed at the end),
    each with the image already pulled so that no timed run includes a pull."""
    from tests.harness import Target

    with contextlib.ExitStack() as stack:
        targets = list(have)
        while len(targets) < 1 + len(VARIANTS):
            target = stack.enter_context(Target(registry=reg))
            target.ssh(f"podman pull -q {IMAGE}")
            targets.append(target)
        yield targets


def print_compare(res: dict[str, Any]) -> None:
    n = res["services"]
    print(f"\n## {n} web containers, one config file each: bundle vs {res['ansible_version']}")
    ansible = res["ansible"]["times"]
    for name in res["columns"]:
        col = res[name]
        print(f"{name} ({'ansible-playbook' if name == 'ansible' else variant_keys(name)}):")
        for kind, times in col["times"].items():
            f = Figure(kind, times)
            ratio = statistics.median(ansible[kind]) / f.median if kind in ansible else 0.0
            server = col.get("server_seconds", {}).get(kind)
            extra = f"   switcher's own time {statistics.median(server):.2f} s" if server else ""
            print(f"    {kind:<8} {f.cell():<28} ansible/this {ratio:5.1f}x{extra}")
        for kind, recap in col.get("recaps", {}).items():
            print(f"    recap, {kind}: {recap}")
    extras = res.get("extras", {})
    for name, phases_ in extras.get("phases", {}).items():
        print(f"one-change `bundle switch` ({name}), in-process, median per phase:")
        for k, v in phases_.items():
            print(f"    {k:<62} {v if isinstance(v, str) else fmt(v)}")
    for name, times in extras.get("start_probe", {}).items():
        print(f"on the server: {name:<58} {Figure(name, times).cell()}")
