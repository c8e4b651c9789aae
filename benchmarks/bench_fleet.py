"""Fleet benchmark: one host vs 10 hosts in parallel vs 10 one after another.

Run as root: .venv/bin/python benchmarks/bench_fleet.py [--hosts 10] [--runs 3] [--json FILE]
                                                         [--at-commit REV]
Two kinds of server: folders standing in for servers (files only: the tool's own overhead) and
real throwaway servers (systemd, sshd, podman; builder/testserver). Each figure is the median
wall time of the real `bundle switch` command for a one-change deploy (every host's page
changes, so every host restarts one container). Results go in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# benchkit first: it puts the code measured (work tree or --at-commit export) on sys.path
from benchkit import run_at_commit, tree_env, without_at_commit

from builder.testserver import Registry, Target

STACK = """\
[host]
name = "{name}"
address = "{name}"
tags = ["bench"]

[vars]
message = "run 0"

[containers.web]
image = "registry.test:5000/bundle/web"
version = "1.0.0"
ports = ["0.0.0.0:8080:8080"]
configs = [{{ template = "index.html.j2", mount = "/www/index.html" }}]

[containers.other]
image = "registry.test:5000/bundle/web"
version = "1.0.0"
ports = ["0.0.0.0:8081:8080"]
"""


class Fleet:
    def __init__(self, root: Path, names: list[str]) -> None:
        self.root = root
        self.names = names
        self.home = root / "home"
        (root / "stacks/templates").mkdir(parents=True)
        (root / "stacks/templates/index.html.j2").write_text(
            "{{ vars.message }} on {{ host.name }}\n"
        )
        for name in names:
            (root / f"stacks/{name}.toml").write_text(STACK.format(name=name))
        (self.home / ".ssh").mkdir(parents=True, mode=0o700)
        self.run_no = 0

    def bump(self) -> None:
        self.run_no += 1
        for name in self.names:
            path = self.root / f"stacks/{name}.toml"
            text = path.read_text()
            path.write_text(
                text.replace(f'message = "run {self.run_no - 1}"', f'message = "run {self.run_no}"')
            )

    def switch(self, *args: str) -> float:
        self.busy_before = busy_seconds()
        t0 = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "builder.cli", "switch", *args],
            cwd=self.root,
            env={"HOME": str(self.home), "PATH": "/usr/bin:/bin", "NO_COLOR": "1", **tree_env()},
            capture_output=True,
            text=True,
            check=False,
        )
        elapsed = time.perf_counter() - t0
        self.last_busy = (busy_seconds() - self.busy_before) / (elapsed * os.cpu_count())
        if result.returncode != 0:
            raise SystemExit(
                f"bundle switch {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
            )
        return elapsed


def busy_seconds() -> float:
    """CPU time all cores of this machine spent busy so far (from /proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def measure(fleet: Fleet, runs: int, extra: list[str]) -> dict[str, float]:
    one: list[float] = []
    par: list[float] = []
    seq: list[float] = []
    load: list[float] = []
    fleet.switch("@bench", *extra)  # first deploy everywhere (pulls images); not measured
    for _ in range(runs):
        fleet.bump()
        par.append(fleet.switch("@bench", "--parallel", str(len(fleet.names)), *extra))
        load.append(fleet.last_busy)
        fleet.bump()
        seq.append(fleet.switch("@bench", "--parallel", "1", *extra))
        fleet.bump()
        t = fleet.switch(fleet.names[0], *[a.replace("{host}", fleet.names[0]) for a in extra])
        one.append(t)
        # the other hosts missed that bump; bring them level so the next runs change one unit each
        fleet.switch("@bench", *extra)
    return {"one": one, "parallel": par, "sequential": seq, "cpu_busy": load}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hosts", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the raw times here")
    parser.add_argument("--at-commit", metavar="REV", help="measure the code committed at REV")
    args = parser.parse_args()
    if args.at_commit and "BENCH_TREE" not in os.environ:
        argv = without_at_commit(sys.argv[1:], args.at_commit)
        sys.exit(run_at_commit(__file__, args.at_commit, argv))
    names = [f"host{i}" for i in range(1, args.hosts + 1)]
    work = Path(tempfile.mkdtemp(prefix="bundle-fleet-"))
    results = {}
    try:
        folders = Fleet(work / "folders", names)
        results["folders"] = measure(folders, args.runs, ["--target", f"{work}/srv/{{host}}"])
        registry = Registry.start()
        targets: list[Target] = []
        try:
            registry.push_busybox("bundle/web", "1.0.0")
            real = Fleet(work / "real", names)
            config, known = [], []
            key = real.home / ".ssh/id_bench"
            for name in names:
                t = Target(registry=registry).up()
                targets.append(t)
                if not key.exists():
                    shutil.copy(t.key_path, key)
                    key.chmod(0o600)
                config.append(
                    f"Host {name}\n  HostName {t.host}\n  User root\n  IdentityFile {t.key_path}\n"
                )
                known.append(t.known_hosts_path.read_text())
            (real.home / ".ssh/config").write_text("".join(config))
            (real.home / ".ssh/known_hosts").write_text("".join(known))
            results["real"] = measure(real, args.runs, [])
        finally:
            for t in targets:
                t.down()
            registry.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps({"hosts": args.hosts, **results}, indent=1))
    print(f"{args.hosts} hosts, {args.runs} runs per figure (median), one-change `bundle switch`")
    for kind, raw in results.items():
        r = {k: statistics.median(v) for k, v in raw.items()}
        print(
            f"{kind:8} one host {r['one']:6.2f} s | {args.hosts} in parallel {r['parallel']:6.2f} s "
            f"({r['parallel'] / r['one']:.2f}x one host, CPUs {r['cpu_busy']:.0%} busy) | "
            f"{args.hosts} one after another {r['sequential']:6.2f} s"
        )


if __name__ == "__main__":
    main()
