"""benchmarks/report.py: the cells, ratios and verdicts of the tables run_all.py prints."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import report

IMPORTTIME = """\
import time: self [us] | cumulative | imported package
import time:       100 |        100 |   _io
import time:      2000 |       2500 |     paramiko.util
import time:       500 |        500 |       paramiko
import time:      3000 |       3000 |   builder.cli
"""


def test_cell_is_median_with_range_and_a_single_run_is_its_value() -> None:
    assert report.cell([1.2, 0.9, 1.5]) == "1.20 s (900 ms–1.50 s)"
    assert report.cell([0.0421]) == "42 ms"
    assert report.cell([]) == "–"
    assert report.seconds(12.34) == "12.3 s"


def test_ratio_is_ansible_median_over_bundle_median() -> None:
    assert report.ratio([10.0, 20.0, 30.0], [1.0, 2.0, 3.0]) == 10.0
    assert report.ratio([], [1.0]) is None
    assert report.times_ratio(None) == "–"
    assert report.times_ratio(12.345) == "12.3×"


def test_goal_checks_time_and_speedup() -> None:
    goal = report.Goal("≤ 0.75 s, ≥ 25×", max_seconds=0.75, min_ratio=25)
    assert goal.met(0.7, 26)
    assert not goal.met(0.8, 30)
    assert not goal.met(0.7, 20)
    assert not goal.met(0.7, None)
    assert report.verdict(goal, 0.7, 30) == "yes"
    assert report.verdict(goal, 0.9, 30) == "**no**"
    assert report.verdict(None, 0.9) == "–"


def test_deploy_table_has_ratio_target_and_verdict_per_bundle_column() -> None:
    res = {
        "columns": ["ansible", "defaults", "no waits"],
        "ansible": {"times": {"change": [20.0, 19.0, 21.0]}},
        "defaults": {"times": {"change": [2.0, 2.2, 2.4]}},
        "no waits": {"times": {"change": [1.0, 0.9, 1.1]}},
    }
    lines = report.deploy_table("deploy", res).splitlines()
    assert lines[0].startswith("|  | ansible-playbook | bundle, defaults | ratio | target | met?")
    assert lines[2] == (
        "| one config file changed | 20.0 s (19.0 s–21.0 s) | 2.20 s (2.00 s–2.40 s) | 9.1× "
        "| ≤ 2.5 s | yes | 1.00 s (900 ms–1.10 s) | 20.0× | ≤ 0.75 s, ≥ 25× | **no** |"
    )
    assert len(lines) == 3  # no row for figures nobody measured


def test_parse_figures_reads_label_value_lines_in_seconds() -> None:
    text = "machine: x86_64 CPython 3.11\nbuild vps1, cold:      140 ms\nbuild 2,000 services:  1.25 s\n"
    assert report.parse_figures(text) == {"build vps1, cold": 0.140, "build 2,000 services": 1.25}
    assert report.build_goal("build 2,000 services") == report.BUILD_GOALS["2,000"]
    assert report.build_goal("diff of two 500-service gens") is None


def test_import_top_sums_self_time_per_top_level_package() -> None:
    top, total = report.import_top(IMPORTTIME, top=2)
    assert top == {"builder": 3000.0, "paramiko": 2500.0}
    assert total == 5600.0
