"""The corpus of malformed stacks: each one is refused with its exact lines, exit 2, nothing built.

Every `tests/badstacks/CASE.toml` starts with a comment saying what is wrong, then one
`# expect: LINE` per problem: the exact line `bundle` prints after `error: `. The case is copied
into a fresh project as `stacks/bad.toml`, next to this folder's `templates/` and `shared/`,
and both `bundle build bad` and `bundle check bad` run on it for real.

A line ending in `(allowed here: …)` matches any list of allowed keys: the top-level tables
grow with features, and that case is about the unknown key, not about the list.

To add a case: write CASE.toml with its description line and the lines you expect (line
numbers count the comment lines too), and run this test.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CASES = sorted(HERE.glob("*.toml"))


def expected_lines(case: Path) -> list[str]:
    lines = case.read_bytes().decode("utf-8", "replace").splitlines()
    return [line.removeprefix("# expect: ") for line in lines if line.startswith("# expect: ")]


def matches(line: str, expected: str) -> bool:
    if expected.endswith("(allowed here: …)"):
        prefix = expected.removesuffix("…)")
        return line.startswith(prefix) and line.endswith(")") and len(line) > len(prefix) + 1
    return line == expected


def bundle(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "builder.cli", *args],
        cwd=project,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "NO_COLOR": "1", "HOME": str(project)},
        timeout=60,
        check=False,
    )


def test_the_corpus_is_big_enough() -> None:
    assert len(CASES) >= 40
    for case in CASES:
        assert case.read_bytes().startswith(b"# "), f"{case.name}: no description line"
        assert expected_lines(case), f"{case.name}: no `# expect:` line"


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_bad_stack_is_refused_with_its_lines(case: Path, tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "stacks").mkdir(parents=True)
    for sub in ("templates", "shared"):
        shutil.copytree(HERE / sub, project / "stacks" / sub)
    shutil.copy(case, project / "stacks/bad.toml")
    want = [f"error: {line}" for line in expected_lines(case)]
    n = len(want)
    summary = f"{n} problem{'s' if n != 1 else ''}; nothing was built or changed"

    for command in ("build", "check"):
        result = bundle(project, command, "bad")
        assert result.returncode == 2, f"bundle {command}: {result.stdout}{result.stderr}"
        assert "Traceback" not in result.stderr
        assert result.stdout == ""
        got = result.stderr.splitlines()
        assert len(got) == n + 1 and got[-1] == summary, result.stderr
        for line, expected in zip(got, want, strict=False):
            assert matches(line, expected), f"got:  {line}\nwant: {expected}"

    built = project / "bundles" / "bad"
    assert not built.exists() or not any(p.name[0].isdigit() for p in built.iterdir())
