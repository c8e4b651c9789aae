"""Build-side benchmarks: `bundle build vps1` cold and no-op, 500- and 2,000-service stacks (the
2,000 on tmpfs when /dev/shm exists), a 500-service diff, `bundle generations` with 1,000 kept,
and the start-up of `bundle --help` above the bare interpreter.

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


def scratch() -> Path:
    """A work folder on tmpfs when there is one: the 2,000-service figure is CPU, not disk."""
    shm = Path("/dev/shm")
    return Path(tempfile.mkdtemp(prefix="bundle-bench-", dir=shm if shm.is_dir() else None))


def kept_generations(project: Path, host: str, count: int) -> None:
    """`count` generations of `host`, copies of its built one, as if built one by one."""
    folder = project / "bundles" / host
    built = next(p for p in folder.iterdir() if p.is_dir())
    log = []
    for n in range(2, count + 1):
        name = f"{n}-{n:012x}"
        shutil.copytree(built, folder / name)
        shutil.copyfile(built.with_name(built.name + ".tar.zst"), folder / f"{name}.tar.zst")
        log.append(f'{{"generation": "{name}", "built_at": "2026-01-01T00:00:00Z"}}\n')
    with open(folder / "builds.jsonl", "a") as out:
        out.writelines(log)


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

        fast = scratch()
        try:
            (fast / "stacks/templates").mkdir(parents=True)
            shutil.copyfile(big / "stacks/templates/page.j2", fast / "stacks/templates/page.j2")
            (fast / "stacks/big.toml").write_text(big_stack(2000, "1.27.3"))
            huge, _ = median_of(
                args.runs,
                lambda: shutil.rmtree(fast / "bundles", ignore_errors=True),
                [*BUNDLE, "build", "big"],
                fast,
            )
            shutil.copytree(work / "stacks", fast / "stacks", dirs_exist_ok=True)
            subprocess.run([*BUNDLE, "build", "vps1"], cwd=fast, check=True, capture_output=True)
            kept_generations(fast, "vps1", 1000)
            listing = [*BUNDLE, "generations", "vps1"]
            first_listing = timed(listing, fast)  # no index yet: every manifest read once
            gens, _ = median_of(args.runs, lambda: None, listing, fast)
        finally:
            shutil.rmtree(fast, ignore_errors=True)
        bare, _ = median_of(args.runs, lambda: None, [sys.executable, "-c", "pass"], work)
        helped, _ = median_of(args.runs, lambda: None, [*BUNDLE, "--help"], work)
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
    print(f"build 2000 services, cold, tmpfs:  {huge * 1000:7.0f} ms")
    print(f"generations, 1000 kept, no index:  {first_listing * 1000:7.0f} ms (one run)")
    print(f"generations, 1000 kept:            {gens * 1000:7.0f} ms")
    print(f"python -c pass:                    {bare * 1000:7.0f} ms")
    print(
        f"bundle --help:                     {helped * 1000:7.0f} ms ({(helped - bare) * 1000:.0f} ms above)"
    )


if __name__ == "__main__":
    main()
