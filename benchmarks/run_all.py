"""Every figure of issue 12 in one command: deploys side by side with Ansible, start-up, builds,
`bundle generations`, fleets. Writes the raw times as JSON and prints markdown tables.

Run as root (it boots test servers: docs/testing.md), with ansible-core in
/var/tmp/bench-ansible-venv (ANSIBLE_VENV):

    .venv/bin/python benchmarks/run_all.py [--runs 5] [--json FILE] [--at-commit REV] [--quick]
                                           [--only deploy scale startup build fleet]

--at-commit REV measures builder/, activate/ and stacks/ as committed at REV (exported with
git archive) with the benchmarks as they are now; "before" and "after" are two invocations on
the same machine. --quick: one run each and smaller scales, to check that everything runs.
Bundle and Ansible runs interleave (benchmarks/bench_versus.py).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import bench_local
import bench_versus
import report
from benchkit import (
    ANSIBLE_VENV,
    IMAGE,
    QUIET,
    REPO,
    ansible_missing,
    run_at_commit,
    without_at_commit,
)

HERE = Path(__file__).resolve().parent
PARTS = ("deploy", "scale", "startup", "build", "fleet")


def scales(quick: bool) -> dict[str, int]:
    if quick:
        return {"deploy": 6, "scale": 12, "startup_runs": 3, "generations": 50, "fleet_hosts": 3}
    return {"deploy": 15, "scale": 60, "startup_runs": 40, "generations": 1000, "fleet_hosts": 10}


def first_line(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
    except OSError:
        return "not installed"
    return (out.stdout or out.stderr).strip().splitlines()[0] if out.returncode == 0 else "?"


def machine() -> dict[str, str]:
    cpu = next(
        (ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
         if ln.startswith("model name")),
        platform.machine(),
    )  # fmt: skip
    mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    os_name = platform.system()
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("PRETTY_NAME="):
            os_name = line.split("=", 1)[1].strip('"')
    commit = os.environ.get("BENCH_COMMIT")
    head = first_line(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": f"{cpu}, {os.cpu_count()} cores",
        "ram": f"{mem_kib / 1024 / 1024:.0f} GiB",
        "os": f"{os_name}, {platform.system()} {platform.release()}",
        "python": f"CPython {platform.python_version()}",
        "podman": first_line(["podman", "--version"]),
        "ansible-core": first_line([str(ANSIBLE_VENV / "bin/ansible-playbook"), "--version"]),
        "code": f"commit {commit}" if commit else f"work tree (HEAD {head}, with its changes)",
        "load average at the start": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
    }


def run_deploys(parts: list[str], sc: dict[str, int], runs: int) -> dict[str, Any]:
    """The deploy figures against Ansible: three servers, one per column, kept for both parts."""
    from tests.harness import Registry

    out: dict[str, Any] = {}
    work = Path(tempfile.mkdtemp(prefix="bundle-bench-all-"))
    try:
        with Registry.start() as reg:
            reg.push_busybox("bundle/web", "1.0.0")
            with bench_versus.servers(reg, []) as targets:
                out["server"] = {
                    "podman": targets[0].ssh("podman --version").stdout.strip(),
                    "systemd": targets[0].ssh("systemctl --version").stdout.splitlines()[0],
                    "python3": targets[0].ssh("python3 --version").stdout.strip(),
                }
                if "deploy" in parts:
                    out["deploy"] = bench_versus.compare(
                        work / "deploy", targets, sc["deploy"], runs, runs, noop=True, extras=True
                    )
                if "scale" in parts:
                    out["scale"] = bench_versus.compare(
                        work / "scale", targets, sc["scale"], runs, 1, noop=False
                    )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


def run_fleet(hosts: int, runs: int) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        argv = [sys.executable, str(HERE / "bench_fleet.py"), "--hosts", str(hosts)]
        argv += ["--runs", str(runs), "--json", f.name]
        result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=7200)
        if result.returncode != 0:
            raise RuntimeError(f"bench_fleet.py:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
        return dict(json.loads(Path(f.name).read_text()))


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    out = [f"Measured {m['date']} by `benchmarks/run_all.py {' '.join(results['argv'])}`."]
    out.append(", ".join(f"{k}: {v}" for k, v in m.items() if k != "date") + ".")
    if "server" in results:
        s = results["server"]
        out.append(f"Test servers: {s['systemd']}, {s['podman']}, {s['python3']}.")
    out.append(
        f"{results['runs']} runs per figure: median (min–max); ratio = Ansible's median / bundle's."
    )
    for part, title in (("deploy", "services"), ("scale", "services, the seed's scale")):
        if part in results:
            res = results[part]
            out.append(f"\n### {res['services']} {title}: {res['ansible_version']} vs bundle\n")
            out.append(report.deploy_table(part, res))
    if "startup" in results:
        out.append("\n### Start-up\n")
        out.append(report.startup_table(results["startup"]))
        for name, imp in results["startup"]["importtime"].items():
            out.append(f"\n`-X importtime` of `{name}`, by top-level package:\n")
            out.append(report.importtime_table(imp["top"], imp["total_us"]))
    if "build" in results:
        out.append("\n### Builds (`benchmarks/bench_build.py`) and `bundle generations`\n")
        out.append(report.build_table(results["build"]))
    if "fleet" in results:
        out.append("\n### Fleets (`benchmarks/bench_fleet.py`)\n")
        out.append(report.fleet_table(results["fleet"]))
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="one run each, smaller scales")
    parser.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--json", type=Path, default=Path("bench-results.json"), metavar="FILE")
    parser.add_argument("--at-commit", metavar="REV", help="measure the code committed at REV")
    parser.add_argument(
        "--quiet", type=float, default=QUIET.threshold, metavar="F",
        help="start a timed run only when the CPUs were at most this busy for 1 s (1: never wait)",
    )  # fmt: skip
    args = parser.parse_args()
    if args.at_commit and "BENCH_TREE" not in os.environ:
        argv = without_at_commit(sys.argv[1:], args.at_commit)
        # the same file whatever folder the export runs in
        keep = [a for i, a in enumerate(argv) if a != "--json" and argv[i - 1 : i] != ["--json"]]
        argv = [a for a in keep if not a.startswith("--json=")]
        argv += ["--json", str(args.json.resolve())]
        sys.exit(run_at_commit(__file__, args.at_commit, argv))
    if set(args.only) & {"deploy", "scale"} and (missing := ansible_missing()):
        sys.exit(missing)
    if os.geteuid() != 0 and set(args.only) & {"deploy", "scale", "fleet"}:
        sys.exit("the deploy and fleet parts boot test servers and need root (docs/testing.md)")
    QUIET.threshold = args.quiet
    runs = 1 if args.quick else args.runs
    sc = scales(args.quick)
    results: dict[str, Any] = {"argv": sys.argv[1:], "runs": runs, "image": IMAGE}
    results["machine"] = machine()
    if {"deploy", "scale"} & set(args.only):
        results.update(run_deploys(args.only, sc, runs))
    if "startup" in args.only:
        results["startup"] = bench_local.startup(max(runs, sc["startup_runs"]))
    if "build" in args.only:
        results["build"] = bench_local.bench_build(runs)
        results["build"]["generations"] = bench_local.generations(sc["generations"], runs * 4)
    if "fleet" in args.only:
        results["fleet"] = run_fleet(sc["fleet_hosts"], runs)
    results["quiet"] = {"runs": QUIET.runs, "waited_s": QUIET.waited, "gave_up": QUIET.gave_up}
    args.json.write_text(json.dumps(results, indent=1))
    print(markdown(results))
    print(f"\nraw results: {args.json}")


if __name__ == "__main__":
    main()
