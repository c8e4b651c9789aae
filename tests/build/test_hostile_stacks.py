"""Property: whatever a stack file holds, `bundle check` and `bundle build` exit 0 or 2, never
with a traceback, and a refused stack leaves nothing under bundles/.

Stacks are generated from the model's own keys with hostile values (control characters, line
breaks, huge strings, wrong types, cycles, clashing ports, odd time values), plus arbitrary
bytes; most run in-process through builder.cli.main, a few through the real command. What is
accepted must pass podman's quadlet generator.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import attrs
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from builder.cli import main
from builder.stack import model
from builder.stack.model import Check, ConfigFile, Container, Pod, Script
from builder.stack.model import HealthCheck as Health
from tests.build import stack_strategies
from tests.build.conftest import quadlet_dryrun
from tests.build.stack_strategies import make_templates

SETTINGS = settings(
    max_examples=60,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
NAMES = st.sampled_from(["web", "db", "cache", "bad", "x"])
HOSTILE_TEXT = st.one_of(
    st.sampled_from(
        [
            "", " ", "1.27.3", "alpine", "latest", "daily", "every tuesday", "30s", "1 d",
            "8080:80", "80:80/udp", "/srv/data:/data", "data:/data", "a\nb", "x\rEnv=1",
            "\x1b[31m", "%h $HOME", '"quoted"', "\\", "../../etc/passwd", "site.conf",
            "Mon..Fri 06:00", "*-*-* 03:00", "docker.io/library/nginx", "web", "x" * 5000,
        ]
    ),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=40),
)  # fmt: skip
VALUES = st.recursive(
    st.one_of(HOSTILE_TEXT, st.integers(-(2**63), 2**63 - 1), st.booleans(), st.floats(-1e9, 1e9)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(HOSTILE_TEXT, inner, max_size=3)
    ),
    max_leaves=6,
)


def keys_of(cls: type) -> list[str]:
    return [f.name for f in attrs.fields(cls)]


def table(cls: type, extra: dict[str, Any] | None = None) -> st.SearchStrategy[dict[str, Any]]:
    keys = st.sampled_from([*keys_of(cls), "imaeg"])
    return st.dictionaries(keys, VALUES, max_size=5).map(lambda d: {**(extra or {}), **d})


CONTAINER = st.one_of(
    table(Container, {"image": "docker.io/library/nginx", "version": "1.27.3"}),
    st.fixed_dictionaries(
        {"image": st.just("docker.io/library/nginx"), "version": HOSTILE_TEXT},
        optional={
            "depends_on": st.lists(NAMES, max_size=3),
            "ports": st.lists(HOSTILE_TEXT, max_size=3),
            "environment": st.dictionaries(st.sampled_from(["A", "B_1"]), HOSTILE_TEXT),
            "labels": st.dictionaries(HOSTILE_TEXT, HOSTILE_TEXT, max_size=2),
            "health": table(Health, {"cmd": "true"}),
            "configs": st.lists(table(ConfigFile, {"mount": "/etc/x"}), max_size=2),
            "checks": st.lists(table(Check), max_size=2),
        },
    ),
)
STACK = st.fixed_dictionaries(
    {"host": st.just({"name": "bad", "address": "bad.example.org"})},
    optional={
        "containers": st.dictionaries(NAMES, CONTAINER, max_size=3),
        "pods": st.dictionaries(NAMES, table(Pod), max_size=2),
        "scripts": st.dictionaries(NAMES, table(Script, {"run": "true"}), max_size=2),
        "volumes": st.dictionaries(NAMES, st.just({}), max_size=2),
    },
)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value) if value == value else "nan"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=True)  # a JSON string is a TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


def toml_document(doc: dict[str, Any]) -> bytes:
    out: list[str] = []
    for top, body in doc.items():
        # [host], [vars] and [backup] are one table; the others a table of named tables
        named = body.items() if top not in ("host", "vars", "backup") else [(None, body)]
        for name, fields in named:
            out.append(f"[{top}]\n" if name is None else f"[{top}.{json.dumps(name)}]\n")
            out += [f"{json.dumps(k)} = {toml_value(v)}\n" for k, v in fields.items()]
    return "".join(out).encode()


def run(stack: bytes, command: str) -> tuple[int, str, Path]:
    root = Path(tempfile.mkdtemp(prefix="hostile-"))
    (root / "outside").mkdir()
    make_templates(root / "stacks/templates", root / "outside")
    (root / "stacks/bad.toml").write_bytes(stack)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["--stacks", str(root / "stacks"), "--bundles", str(root / "bundles"),
                     command, "bad"])  # fmt: skip
    return code, err.getvalue(), root


FIELDS = {f.name for c in vars(model).values() if attrs.has(c) for f in attrs.fields(c)}


def outcome(err: str) -> str:
    """'built', or the kind of the first refusal: the last field name of its key path."""
    first = err.splitlines()[0] if err else ""
    rest = re.sub(r'"(?:[^"\\]|\\.)*"', "NAME", first.removeprefix("error: "))
    keypath = re.sub(r"^[^ ]+?(:[0-9]+)?: ", "", rest).split(": ", 1)[0]
    names = [n for n in re.findall(r"[a-z_]+", keypath) if n in FIELDS]
    return "refused: " + (names[-1] if names else "file")


def assert_outcome(stack: bytes, quadlet_bin: Path) -> str:
    seen = "built"
    for command in ("check", "build"):
        code, err, root = run(stack, command)
        try:
            assert code in (0, 2), err
            assert "Traceback" not in err
            built = root / "bundles/bad"
            generations = (
                [p for p in built.iterdir() if p.name[0].isdigit() and p.is_dir()]
                if built.exists()
                else []
            )
            if code == 2:
                seen = outcome(err)
                assert err.splitlines()[-1].endswith("nothing was built or changed"), err
                assert generations == []
            elif command == "build":
                assert len(generations) == 1
                units = generations[0] / "units/quadlet"
                if units.is_dir():
                    result = quadlet_dryrun(quadlet_bin, units)
                    assert result.returncode == 0, result.stderr
        finally:
            shutil.rmtree(root)
    return seen


@SETTINGS
@given(doc=STACK)
def test_generated_stacks_are_built_or_refused_cleanly(
    doc: dict[str, Any], quadlet_bin: Path
) -> None:
    assert_outcome(toml_document(doc), quadlet_bin)


def test_well_typed_stacks_reach_the_deep_checks(quadlet_bin: Path) -> None:
    outcomes: Counter[str] = Counter()

    @settings(SETTINGS, max_examples=150)
    @given(doc=stack_strategies.STACK)
    def built_or_refused(doc: dict[str, Any]) -> None:
        seen = assert_outcome(toml_document(doc), quadlet_bin)
        event(seen)
        outcomes[seen] += 1

    built_or_refused()
    print(sorted(outcomes.items(), key=lambda kv: -kv[1]))
    # the stacks get past the type checks: some build, and the refusals are many kinds
    assert outcomes["built"] >= 8, outcomes
    assert len(outcomes) >= 10, outcomes


@SETTINGS
@given(data=st.binary(max_size=300), at=st.integers(0, 200))
def test_arbitrary_bytes_are_refused_cleanly(data: bytes, at: int, quadlet_bin: Path) -> None:
    valid = b'[host]\nname = "bad"\naddress = "bad.example.org"\n'
    assert_outcome(data, quadlet_bin)
    assert_outcome(valid[:at] + data + valid[at:], quadlet_bin)


def test_the_real_command_refuses_hostile_bytes(tmp_path: Path) -> None:
    (tmp_path / "stacks").mkdir()
    cases = [b"\xff\xfe\x00[host]", b'[host]\nname = "bad"\naddress = "a\\nb"\n', b"\x00" * 64]
    for stack in cases:
        (tmp_path / "stacks/bad.toml").write_bytes(stack)
        for command in ("check", "build"):
            result = subprocess.run(
                [sys.executable, "-m", "builder.cli", command, "bad"],
                cwd=tmp_path,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert result.returncode == 2, result.stderr
            assert "Traceback" not in result.stderr and result.stderr.startswith("error: ")
        assert not (tmp_path / "bundles/bad").exists() or not any(
            p.name[0].isdigit() for p in (tmp_path / "bundles/bad").iterdir()
        )
