"""Shell completion, exercised in a real bash: commands, hosts and tags, options, generations."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

from tests.build.conftest import Project


def complete(p: Project, line: str, tmp_path: Path) -> list[str]:
    """What bash offers for `line` (the cursor at its end), using `bundle completion bash`."""
    shim = tmp_path / "bin" / "bundle"
    shim.parent.mkdir(exist_ok=True)
    shim.write_text(f'#!/bin/sh\nexec {sys.executable} -m builder.cli "$@"\n')
    shim.chmod(0o755)
    script = p.run("completion", "bash").stdout
    words = line.split(" ")
    program = (
        f"{script}\n"
        f"COMP_WORDS=({' '.join(shlex.quote(w) for w in words)})\n"
        f"COMP_CWORD={len(words) - 1}\n"
        "_bundle_complete\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    result = subprocess.run(
        ["bash", "--norc", "-c", program],
        cwd=p.root,
        capture_output=True,
        text=True,
        env={"PATH": f"{shim.parent}:/usr/bin:/bin", "HOME": str(p.root)},
        check=True,
    )
    return [w for w in result.stdout.splitlines() if w]


def test_bash_completion(project: Project, tmp_path: Path) -> None:
    assert "switch" in complete(project, "bundle sw", tmp_path)
    assert complete(project, "bundle sw", tmp_path) == ["switch"]
    assert complete(project, "bundle build vps", tmp_path) == [
        "vps1",
        "vps1-rootless",
        "vps1-staging",
        "vps2",
    ]
    assert complete(project, "bundle switch @mon", tmp_path) == ["@monitoring"]
    assert "--generation" in complete(project, "bundle push vps1 --", tmp_path)
    assert project.run("build", "vps1").returncode == 0
    project.edit("vps1.toml", 'version = "29.0.1-apache"', 'version = "29.0.2-apache"')
    assert project.run("build", "vps1").returncode == 0
    assert complete(project, "bundle push vps1 --generation ", tmp_path) == ["2", "1"]
    assert complete(project, "bundle diff vps1 ", tmp_path) == ["2", "1"]


def test_zsh_registers_the_completion(project: Project) -> None:
    script = project.run("completion", "zsh").stdout
    result = subprocess.run(
        [
            "zsh",
            "-f",
            "-c",
            f"{script}\nwhence -w _bundle_complete\nprint -r -- $_comps[bundle] $_comps[bundlectl]",
        ],
        cwd=project.root,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(project.root)},
        check=True,
    )
    assert result.stdout.splitlines() == [
        "_bundle_complete: function",
        "_bash_complete -F _bundle_complete _bash_complete -F _bundle_complete",
    ]
    assert project.run("completion", "fish").returncode == 2


def test_completion_reads_stacks_as_a_build_does(empty_project: Project, tmp_path: Path) -> None:
    """A stack that is not UTF-8, a symlink out of stacks/, a file name or tag with a line
    break: completion offers none of them and never prints a traceback."""
    stack = '[host]\nname = "{n}"\naddress = "{n}.example.org"\ntags = [{t}]\n'
    empty_project.write("web1.toml", stack.format(n="web1", t='"prod", "two\\nlines", 3'))
    (empty_project.stacks / "web2.toml").write_bytes(
        stack.format(n="web2", t='"latin1"').encode() + b"# caf\xe9\n"
    )
    outside = tmp_path / "private.toml"
    outside.write_text(stack.format(n="web3", t='"leaked"'))
    (empty_project.stacks / "web3.toml").symlink_to(outside)
    empty_project.write("web4\n.toml", stack.format(n="web4", t='"odd"'))
    offered = complete(empty_project, "bundle build ", tmp_path)
    assert offered == ["web1", "web2", "web3", "@prod"], offered
