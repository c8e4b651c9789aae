"""podman's health check timings, as podman 5.4 on the real server reads them.

`podman create --health-interval/--health-timeout/--health-start-period/--health-retries` on
the test server, for a corpus of valid, near-valid and hostile values, against the checker in
builder/stack/timespec.py and builder/render/validate.py: what the checker takes, podman takes (a built unit
never fails at start), and what podman refuses, the checker refuses. The one deliberate
difference: podman stores a negative interval; the checker refuses it.
"""

from __future__ import annotations

import json
import shlex

from builder.render.validate import HEALTH_TIMES
from builder.stack import timespec
from tests.harness import Registry, Target

IMAGE = "registry.test:5000/bundle/web:1.0.0"
CORPUS = [
    "30s", "1s", "999ms", "500ms", "1ns", "0", "0s", "00s", "-1s", "+1s", "-0", "+0", "1.5s",
    "1.s", ".5s", ".s", "1m30s", "2h", "1h1h", "1µs", "1μs", "1us", "1d", "1 s", " 1s", "1s ",
    "1S", "1sec", "10", "disable", "DISABLE", "", "-", "٣s", "1e3s", "1_0s", "0x10s",
    "9223372036854775807ns", "9223372036854775808ns", "2562047h", "2562048h",
    "0.0000000001s", "1.0000000000000000001s",
]  # fmt: skip
RETRIES = [0, 1, 3, 2**31, 2**63 - 1]


def podman_takes(target: Target, flags: list[list[str]]) -> list[bool]:
    """For each set of flags, whether `podman create` takes it; one ssh round trip."""
    script = [f"podman pull -q {IMAGE} >/dev/null"]
    for args in flags:
        argv = shlex.join(["podman", "create", "--health-cmd", "true", *args, IMAGE])
        script.append(f'if id=$({argv} 2>/dev/null); then echo 1; podman rm "$id" >/dev/null;'
                      " else echo 0; fi")  # fmt: skip
    result = target.ssh("bash -s", input="\n".join(script) + "\n")
    return [line == "1" for line in result.stdout.split()]


def test_the_health_checker_agrees_with_podman(target: Target, registry: Registry) -> None:
    cases = [(key, value) for key, _, _ in HEALTH_TIMES for value in CORPUS]
    flags = [[f"--health-{key.replace('_', '-')}", value] for key, value in cases]
    flags += [["--health-retries", str(n)] for n in RETRIES]
    taken = podman_takes(target, flags)
    assert len(taken) == len(flags)

    rules = {key: (least, off) for key, least, off in HEALTH_TIMES}
    disagree = []
    for (key, value), podman in zip(cases, taken[: len(cases)], strict=True):
        ours = timespec.duration_problem(value, *rules[key]) is None
        negative_interval = key == "interval" and (timespec.duration_ns(value) or 0) < 0
        if ours != podman and not (negative_interval and podman and not ours):
            disagree.append(f"{key} {json.dumps(value)}: podman {podman}, checker {ours}")
    for n, podman in zip(RETRIES, taken[len(cases) :], strict=True):
        if (n >= 1) != podman:
            disagree.append(f"retries {n}: podman {podman}, checker {n >= 1}")
    assert disagree == []
    # the corpus covers each way of going wrong: refused by both, and taken by both
    assert sum(taken[: len(cases)]) >= 40 and taken.count(False) >= 40
