"""The markdown tables of benchmarks/run_all.py, from its raw results (pure functions).

Every cell is the median of the runs with their range, "median (min–max)"; a ratio is Ansible's
median over bundle's; each figure with a target of issue 12 says whether the median meets it.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Goal:
    """A target: a most time (seconds), a least speed-up over Ansible, or both."""

    text: str
    max_seconds: float | None = None
    min_ratio: float | None = None

    def met(self, median: float, ratio: float | None = None) -> bool:
        if self.max_seconds is not None and median > self.max_seconds:
            return False
        return self.min_ratio is None or (ratio is not None and ratio >= self.min_ratio)


# (part, figure, column) -> goal; the deploy figures of issue 12
DEPLOY_GOALS = {
    ("deploy", "first", "no waits"): Goal("≤ 2.0 s", max_seconds=2.0),
    ("deploy", "change", "defaults"): Goal("≤ 2.5 s", max_seconds=2.5),
    ("deploy", "change", "no waits"): Goal("≤ 0.75 s, ≥ 25×", max_seconds=0.75, min_ratio=25),
    ("deploy", "noop", "defaults"): Goal("≤ 0.5 s", max_seconds=0.5),
    ("scale", "change", "no waits"): Goal("≥ 40×", min_ratio=40),
}
STARTUP_GOAL = Goal("≤ 60 ms above", max_seconds=0.060)
BUILD_GOALS = {"2000": Goal("≤ 1.0 s", max_seconds=1.0), "2,000": Goal("≤ 1.0 s", max_seconds=1.0)}
GENERATIONS_GOAL = Goal("≤ 0.1 s", max_seconds=0.1)
FLEET_GOALS = {"real": Goal("≤ 1.5×", max_seconds=1.5), "folders": Goal("≤ 2.5×", max_seconds=2.5)}
KIND_LABELS = {
    "first": "first deploy",
    "change": "one config file changed",
    "noop": "nothing changed",
}


def seconds(value: float) -> str:
    """A duration the way the tables print it: ms below one second, else seconds."""
    if value < 1:
        return f"{value * 1000:.0f} ms"
    return f"{value:.2f} s" if value < 10 else f"{value:.1f} s"


def cell(times: Sequence[float]) -> str:
    if not times:
        return "–"
    med = statistics.median(times)
    if len(times) == 1:
        return seconds(med)
    return f"{seconds(med)} ({seconds(min(times))}–{seconds(max(times))})"


def ratio(slower: Sequence[float], faster: Sequence[float]) -> float | None:
    if not slower or not faster or statistics.median(faster) <= 0:
        return None
    return statistics.median(slower) / statistics.median(faster)


def times_ratio(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}×"


def verdict(goal: Goal | None, median: float | None, value: float | None = None) -> str:
    if goal is None or median is None:
        return "–"
    return "yes" if goal.met(median, value) else "**no**"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def deploy_table(part: str, res: dict[str, Any]) -> str:
    """Rows: first deploy, one change, nothing changed; Ansible, then each bundle column with
    its ratio to Ansible, its target and whether it is met."""
    bundle_cols = [c for c in res["columns"] if c != "ansible"]
    header = ["", "ansible-playbook"]
    for c in bundle_cols:
        header += [f"bundle, {c}", "ratio", "target", "met?"]
    rows = []
    ansible = res["ansible"]["times"]
    for kind, label in KIND_LABELS.items():
        if not any(kind in res[c]["times"] for c in res["columns"]):
            continue
        row = [label, cell(ansible.get(kind, []))]
        for c in bundle_cols:
            times = res[c]["times"].get(kind, [])
            r = ratio(ansible.get(kind, []), times)
            goal = DEPLOY_GOALS.get((part, kind, c))
            med = statistics.median(times) if times else None
            row += [cell(times), times_ratio(r), goal.text if goal else "–", verdict(goal, med, r)]
        rows.append(row)
    return table(header, rows)


def startup_table(res: dict[str, Any]) -> str:
    bare = res["times"]["python3 -c pass"]
    rows = [["`python3 -c pass` (the bare interpreter)", cell(bare), "–", "–", "–"]]
    for name, times in res["times"].items():
        if name == "python3 -c pass":
            continue
        above = statistics.median(times) - statistics.median(bare)
        rows.append(
            [
                f"`{name}`",
                cell(times),
                seconds(above),
                STARTUP_GOAL.text,
                verdict(STARTUP_GOAL, above),
            ]
        )
    return table(["command", "wall time", "above the interpreter", "target", "met?"], rows)


def importtime_table(top: dict[str, float], total: float) -> str:
    rows = [[f"`{name}`", f"{us / 1000:.1f} ms"] for name, us in top.items()]
    rows.append(["all imports", f"{total / 1000:.1f} ms"])
    return table(["package (self time of its modules)", "import time"], rows)


def build_goal(label: str) -> Goal | None:
    if "build" not in label:
        return None
    return next((g for k, g in BUILD_GOALS.items() if k in label), None)


def build_table(res: dict[str, Any]) -> str:
    rows = []
    for label, value in res["figures"].items():
        goal = build_goal(label)
        rows.append([label, seconds(value), goal.text if goal else "–", verdict(goal, value)])
    rows.append(
        [
            f"`bundle generations` with {res['generations']['count']:,} generations",
            cell(res["generations"]["times"]),
            GENERATIONS_GOAL.text,
            verdict(GENERATIONS_GOAL, statistics.median(res["generations"]["times"])),
        ]
    )
    return table(["what", "median", "target", "met?"], rows)


def fleet_table(res: dict[str, Any]) -> str:
    n = res["hosts"]
    rows = []
    for kind in ("folders", "real"):
        if kind not in res:
            continue
        r = res[kind]
        factor = statistics.median(r["parallel"]) / statistics.median(r["one"])
        goal = FLEET_GOALS[kind]
        rows.append(
            [
                kind,
                cell(r["one"]),
                f"{cell(r['parallel'])}: {factor:.2f}× one host",
                goal.text,
                verdict(goal, factor),
                cell(r["sequential"]),
                f"{statistics.median(r['cpu_busy']):.0%}",
            ]
        )
    header = ["servers", "one host", f"{n} hosts, `--parallel {n}`", "target", "met?"]
    header += [f"{n} hosts, `--parallel 1`", "CPUs busy (parallel)"]
    return table(header, rows)


FIGURE_LINE = re.compile(r"^\s*([^:]+?):\s+([0-9][0-9.,]*)\s*(ms|s)\s*$")


def parse_figures(text: str) -> dict[str, float]:
    """`label: 123 ms` / `label: 1.2 s` lines of a benchmark's output, in seconds."""
    out = {}
    for line in text.splitlines():
        m = FIGURE_LINE.match(line)
        if m:
            value = float(m.group(2).replace(",", ""))
            out[m.group(1).strip()] = value / 1000 if m.group(3) == "ms" else value
    return out


def import_top(stderr: str, top: int = 10) -> tuple[dict[str, float], float]:
    """From `python -X importtime` output: the `top` top-level packages by the summed self
    time of their modules (µs), and the self time of all imports."""
    per: dict[str, float] = {}
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, _cumulative, name = line[len("import time:") :].split("|", 2)
        package = name.strip().split(".")[0]
        per[package] = per.get(package, 0.0) + float(self_us)
    best = dict(sorted(per.items(), key=lambda kv: -kv[1])[:top])
    return best, sum(per.values())
