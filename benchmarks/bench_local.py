"""Figures that need no server: start-up, `bundle generations` with many generations, builds.

* start-up: `bundle --help` and a no-op `bundle build vps1` against `python3 -c pass` (the same
  interpreter, the bare start), runs interleaved, plus the packages `-X importtime` charges;
* generations: `bundle generations HOST` with N kept generations, made by `bundle build` itself
  (one tiny change each, `builder.cli.main` called in a loop in one process: the same code as
  the command, without N process starts), checked with `bundle generations --json`;
* builds: benchmarks/bench_build.py as it is, its `label: N ms` lines read back.
Every command is a new process of the code measured (benchkit.TREE).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchkit import HERE, QUIET, TREE, tree_env
from report import import_top, parse_figures

BUNDLE = [sys.executable, "-m", "builder.cli"]
BARE = "python3 -c pass"

GENS_STACK = """\
[host]
name = "gens"
address = "gens.example.org"

[vars]
run = "{run}"

[containers.web]
image = "registry.test:5000/bundle/web"
version = "1.0.0"
configs = [{{ template = "page.j2", mount = "/www/index.html" }}]
"""

# builds N generations of stacks/gens.toml in one process; argv: N
MAKE_GENERATIONS = """\
import contextlib, io, re, sys
from pathlib import Path
from builder.cli import main
toml = Path("stacks/gens.toml")
for i in range(int(sys.argv[1])):
    toml.write_text(re.sub(r'run = "[^"]*"', f'run = "{i}"', toml.read_text()))
    with contextlib.redirect_stdout(io.StringIO()):
        if main(["build", "gens"]) != 0:
            sys.exit(f"bundle build gens failed at generation {i + 1}")
"""


def env(home: Path) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "HOME": str(home), "NO_COLOR": "1", **tree_env()}


def run(argv: list[str], cwd: Path, home: Path) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        argv, cwd=cwd, env=env(home), capture_output=True, text=True, check=False, timeout=3600
    )
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return result


def timed(argv: list[str], cwd: Path, home: Path) -> float:
    QUIET.wait()
    t0 = time.perf_counter()
    run(argv, cwd, home)
    return time.perf_counter() - t0


def startup(runs: int) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="bundle-bench-start-"))
    try:
        shutil.copytree(TREE / "stacks", work / "stacks")
        home = work / "home"
        home.mkdir()
        commands = {
            BARE: [sys.executable, "-c", "pass"],
            "bundle --help": [*BUNDLE, "--help"],
            "bundle build vps1 (nothing changed)": [*BUNDLE, "build", "vps1"],
        }
        for argv in commands.values():  # untimed: the first build, bytecode caches written
            run(argv, work, home)
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(runs):
            for name, argv in commands.items():
                times[name].append(timed(argv, work, home))
        imports = {}
        for name, argv in commands.items():
            if name != BARE:
                err = run([argv[0], "-X", "importtime", *argv[1:]], work, home).stderr
                top, total = import_top(err)
                imports[name] = {"top": top, "total_us": total}
        return {"times": times, "importtime": imports}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def generations(count: int, runs: int) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="bundle-bench-gens-"))
    try:
        (work / "stacks/templates").mkdir(parents=True)
        (work / "stacks/templates/page.j2").write_text("run {{ vars.run }}\n")
        (work / "stacks/gens.toml").write_text(GENS_STACK.format(run="start"))
        home = work / "home"
        home.mkdir()
        t0 = time.perf_counter()
        run([sys.executable, "-c", MAKE_GENERATIONS, str(count)], work, home)
        made_in = time.perf_counter() - t0
        rows = json.loads(run([*BUNDLE, "generations", "gens", "--json"], work, home).stdout)
        if len(rows) != count:
            raise RuntimeError(f"bundle generations lists {len(rows)} generations, built {count}")
        argv = [*BUNDLE, "generations", "gens"]
        run(argv, work, home)  # untimed: bytecode caches written
        times = [timed(argv, work, home) for _ in range(runs)]
        return {"count": count, "times": times, "built_in_seconds": made_in}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def bench_build(runs: int) -> dict[str, Any]:
    """benchmarks/bench_build.py, run as the code measured sees it.

    For --at-commit the script is copied into the exported tree first (the instrument as it is
    now, the code as it was), since it builds with the `stacks/` beside it."""
    script = HERE / "bench_build.py"
    if HERE.parent != TREE:
        (TREE / "benchmarks").mkdir(exist_ok=True)
        script = Path(shutil.copy(script, TREE / "benchmarks/bench_build.py"))
    result = subprocess.run(
        [sys.executable, str(script), "--runs", str(runs)],
        # bytecode written as on a user's machine, whatever this shell says
        env={k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"} | tree_env(),
        capture_output=True,
        text=True,
        check=False,
        timeout=7200,
    )
    if result.returncode != 0:
        raise RuntimeError(f"bench_build.py:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return {"figures": parse_figures(result.stdout), "output": result.stdout}
