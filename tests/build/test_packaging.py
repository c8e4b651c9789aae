"""The distribution installs as a user gets it (not editable): both command names, the switcher
and the test server's script inside, and a build works far from this checkout."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from tests.build.conftest import REPO


def test_wheel_installs_both_commands_and_builds(tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(
        REPO,
        src,
        ignore=shutil.ignore_patterns(
            ".venv", "bundles", ".git", "*.egg-info", "__pycache__", "build", "tests"
        ),
    )
    site = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(site),
            str(src),
        ],
        check=True,
        capture_output=True,
    )
    assert (site / "activate/__main__.py").is_file()
    assert (site / "builder/testserver/nspawn-target.sh").is_file()
    env = {**os.environ, "PYTHONPATH": str(site), "NO_COLOR": "1"}
    for name in ("bundle", "bundlectl"):
        help_text = subprocess.run(
            [str(site / "bin" / name), "--help"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert "bundle build vps1" in help_text
        shown = subprocess.run(
            [str(site / "bin" / name), "--version"], env=env, capture_output=True, text=True
        )
        wanted = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
        assert (shown.returncode, shown.stdout) == (0, f"bundle {wanted}\n"), shown.stderr
    project = tmp_path / "elsewhere"
    subprocess.run(
        [str(site / "bin/bundle"), "init", str(project)], env=env, check=True, capture_output=True
    )
    built = subprocess.run(
        [str(site / "bin/bundlectl"), "build", "web1"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    gen = next((project / "bundles/web1").glob("1-*[0-9a-f]"))
    assert (gen / "activate/__main__.py").read_bytes() == (
        REPO / "activate/__main__.py"
    ).read_bytes()


def test_every_third_party_import_is_a_declared_dependency() -> None:
    """A module the code imports itself is declared, with a lower bound: a dependency that
    arrives only through another package (cryptography through paramiko) can leave with it."""
    declared = {
        re.split(r"[<>=!~;\[ ]", spec, maxsplit=1)[0].lower(): spec
        for spec in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    }
    distributions = metadata.packages_distributions()
    imported: dict[str, str] = {}
    for path in sorted([*(REPO / "builder").rglob("*.py"), *(REPO / "activate").rglob("*.py")]):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in ("builder", "activate"):
                    imported.setdefault(top, str(path.relative_to(REPO)))
    assert "cryptography" in imported
    for module, where in imported.items():
        (dist,) = distributions[module]
        spec = declared.get(dist.lower())
        assert spec is not None, f"{where} imports {module}: declare {dist} in pyproject.toml"
        assert ">=" in spec, f"{spec}: give {dist} a lower bound"
