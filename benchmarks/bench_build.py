"""Build-side benchmarks: `bundle build vps1` cold and no-op, a 500-service stack, a 500-service diff.

Run: .venv/bin/python benchmarks/bench_build.py [--runs N]
Each figure is the median wall time of N runs of the real `bundle` command (a new process each
time, as a user runs it). Results go in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUNDLE = [sys.executable, "-m", "builder.cli"]


def timed(cmd: list[str], cwd: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - t0


def median_of(runs: int, setup, cmd: list[str], cwd: Path) -> tuple[float, list[float]]:
    times = []
    for _ in range(runs):
        setup()
        times.append(timed(cmd, cwd))
    return statistics.median(times), times


def big_stack(n: int, version: str) -> str:
    out = ['[host]\nname = "big"\naddress = "big.example.org"\n\n[vars]\ngreeting = "hi"\n']
    for i in range(n):
        out.append(
            f'[volumes.data{i}]\n\n[containers.svc{i}]\nimage = "docker.io/library/nginx"\n'
            f'version = "{version if i % 10 == 0 else "1.27.3"}"\n'
            f'ports = ["127.0.0.1:{10000 + i}:80"]\nvolumes = ["data{i}:/data"]\n'
            f'environment = {{ INDEX = "{i}", NAME = "svc{i}" }}\n'
            f'configs = [{{ template = "page.j2", mount = "/usr/share/nginx/html/index.html" }}]\n'
        )
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bundle-bench-"))
    try:
        shutil.copytree(REPO / "stacks", work / "stacks")

        def wipe() -> None:
            shutil.rmtree(work / "bundles", ignore_errors=True)

        cold, _ = median_of(args.runs, wipe, [*BUNDLE, "build", "vps1"], work)
        subprocess.run([*BUNDLE, "build", "vps1"], cwd=work, check=True, capture_output=True)
        noop, _ = median_of(args.runs, lambda: None, [*BUNDLE, "build", "vps1"], work)

        big = work / "big"
        (big / "stacks/templates").mkdir(parents=True)
        (big / "stacks/templates/page.j2").write_text(
            "<h1>{{ vars.greeting }} from {{ service }}</h1>\n"
        )

        def fresh_big() -> None:
            shutil.rmtree(big / "bundles", ignore_errors=True)
            (big / "stacks/big.toml").write_text(big_stack(500, "1.27.3"))

        big_cold, _ = median_of(args.runs, fresh_big, [*BUNDLE, "build", "big"], big)
        (big / "stacks/big.toml").write_text(big_stack(500, "1.27.4"))
        subprocess.run([*BUNDLE, "build", "big"], cwd=big, check=True, capture_output=True)
        big_diff, _ = median_of(args.runs, lambda: None, [*BUNDLE, "diff", "big", "1", "2"], big)
        big_stat, _ = median_of(
            args.runs, lambda: None, [*BUNDLE, "diff", "big", "1", "2", "--stat"], big
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(
        f"machine: {platform.node()} {platform.machine()} {platform.python_implementation()} {platform.python_version()}"
    )
    print(f"runs per figure: {args.runs} (median)")
    print(f"build vps1, cold:                  {cold * 1000:7.0f} ms")
    print(f"build vps1, no-op:                 {noop * 1000:7.0f} ms")
    print(f"build 500 services, cold:          {big_cold * 1000:7.0f} ms")
    print(f"diff of two 500-service gens:      {big_diff * 1000:7.0f} ms")
    print(f"diff --stat of the same:           {big_stat * 1000:7.0f} ms")


if __name__ == "__main__":
    main()
