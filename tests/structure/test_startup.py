"""A command imports only what it uses: `--help` needs argparse, a no-op build needs no renderer.

Each case runs the real `bundle` command in a fresh interpreter and lists the modules it had
loaded when it ended; the heavy libraries (attrs, cattrs, Jinja2, paramiko, zstandard,
importlib.metadata) must be absent where the command does not use them.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.build.conftest import REPO, make_project

# runs main() as the console script does, then writes the loaded modules to stderr
PROBE = """\
import sys
from builder.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
print("MODULES", " ".join(sorted(sys.modules)), file=sys.stderr)
sys.exit(code)
"""

HEAVY = {"attrs", "attr", "cattrs", "jinja2", "paramiko", "zstandard", "importlib.metadata"}


def loaded(cwd: Path, *argv: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "NO_COLOR": "1", "HOME": str(cwd), "PYTHONPATH": str(REPO)},
        check=False,
    )
    line = next(x for x in result.stderr.splitlines() if x.startswith("MODULES "))
    return result, set(line.split()[1:])


@pytest.mark.parametrize(
    "argv", [("--help",), ("build", "--help"), ("switch", "--help"), ("completion", "bash")]
)
def test_help_and_completion_import_no_library_beyond_the_standard_one(
    tmp_path: Path, argv: tuple[str, ...]
) -> None:
    result, modules = loaded(tmp_path, *argv)
    assert result.returncode == 0, result.stderr
    assert "usage: bundle" in result.stdout or "complete -F" in result.stdout
    assert not modules & HEAVY, sorted(modules & HEAVY)
    assert not any(m.startswith(("builder.stack", "builder.render", "activate")) for m in modules)


def test_version_looks_the_version_up_only_when_asked(tmp_path: Path) -> None:
    result, modules = loaded(tmp_path, "--version")
    assert result.returncode == 0 and result.stdout.startswith("bundle ")
    assert "importlib.metadata" in modules and not modules & (HEAVY - {"importlib.metadata"})


def test_an_up_to_date_build_and_the_generations_list_load_no_renderer(tmp_path: Path) -> None:
    project = make_project(tmp_path / "project")
    first = project.run("build", "vps1")
    assert first.returncode == 0, first.stderr
    result, modules = loaded(project.root, "build", "vps1")
    assert result.returncode == 0 and "vps1 is up to date at generation 1" in result.stdout
    # answered from the folder as it is: not even the model's types (attrs) are loaded
    assert not modules & HEAVY
    assert not modules & {"builder.bundle.build", "builder.commands.secrets", "builder.stack.model"}
    result, modules = loaded(project.root, "generations", "vps1")
    assert result.returncode == 0 and "(latest)" in result.stdout
    # the folder listing, the build log and the index: no model, no store, no deployer
    assert not modules & HEAVY
    assert not modules & {"builder.bundle.store", "builder.deploy.deployer"}


def test_a_build_that_writes_still_renders_and_archives(tmp_path: Path) -> None:
    project = make_project(tmp_path / "project")
    result, modules = loaded(project.root, "build", "vps1")
    assert result.returncode == 0, result.stderr
    assert "built generation 1" in result.stdout
    assert {"jinja2", "cattrs", "zstandard"} <= modules


def test_status_on_a_folder_target_loads_no_renderer_and_no_ssh(tmp_path: Path) -> None:
    project = make_project(tmp_path / "project")
    assert project.run("build", "vps1").returncode == 0
    server = tmp_path / "server"
    server.mkdir()
    result, modules = loaded(project.root, "status", "vps1", "--target", str(server))
    assert result.returncode == 0, result.stderr
    assert "no generation is active" in result.stdout
    # the stack is loaded and checked (cattrs) for its settings; nothing is rendered or sent
    assert "cattrs" in modules
    assert not modules & {"jinja2", "paramiko", "zstandard", "builder.render.renderer"}


def test_an_up_to_date_build_with_a_manifest_damaged_by_hand_builds_again(tmp_path: Path) -> None:
    project = make_project(tmp_path / "project")
    assert project.run("build", "vps1").returncode == 0
    manifest = next((project.root / "bundles/vps1").glob("1-*/manifest.json"))
    manifest.write_text("{not json")
    result = project.run("build", "vps1")
    # the quick answer does not trust what it cannot read: the whole build names the file
    assert result.returncode == 2, result.stderr
    assert "manifest.json: not valid JSON" in result.stderr and "build it again" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_ssh_transport_loads_invoke_only_for_a_match_exec_line(tmp_path: Path) -> None:
    """paramiko.config imports invoke (asyncio, unittest.mock) for `Match exec` alone."""
    config = tmp_path / "ssh_config"
    config.write_text(
        'Match exec "test -e {}"\n  User fromexec\nHost *\n  Port 2222\n'.format(tmp_path / "flag")
    )
    probe = f"""\
import sys
from builder.deploy.transport import ssh
from builder.deploy.transport.paramiko_import import paramiko
heavy = sorted({{"invoke.collection", "asyncio", "unittest.mock"}} & set(sys.modules))
config = paramiko.SSHConfig.from_path({str(config)!r})
print(heavy, config.lookup("h").get("user"), "asyncio" in sys.modules)
open({str(tmp_path / "flag")!r}, "w").close()
print(paramiko.SSHConfig.from_path({str(config)!r}).lookup("h").get("user"))
"""
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["[] None True", "fromexec"]
