"""The switcher's hook runner with a real /bin/sh: a hook that hangs is killed with what it
started, its output is redacted and made safe for a terminal, the first failure stops a phase,
and a switch stopped during a pre-hook ends the hook and changes nothing."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from activate.errors import Failed
from activate.hooks import run_one, run_phase
from activate.manifest import Hook, Hooks
from activate.protocol import HookRun

from .switcherkit import REPO, U, finish, make_bundle, push


def hook(folder: Path, phase: str, n: int, body: str) -> Hook:
    path = f"scripts/hooks/{phase}-{n}.sh"
    (folder / path).parent.mkdir(parents=True, exist_ok=True)
    (folder / path).write_text(f"#!/bin/sh\n{body}\n")
    return Hook(phase, path, body)


def test_a_hook_past_its_timeout_is_killed_with_its_children(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    h = hook(tmp_path, "pre", 1, f"echo started; sleep 300 & echo $! > {pidfile}; wait")
    t0 = time.monotonic()
    r = run_one(h, 1, tmp_path, {}, 1, str)
    assert time.monotonic() - t0 < 60  # a hang guard: the hook itself would take 300 s
    assert r.exit_code is None and r.output == "started"
    child = int(pidfile.read_text())
    for _ in range(100):  # the kill is delivered; the process may take a moment to go
        if not Path(f"/proc/{child}").exists() or "Z" in _state(child):
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"the hook's child {child} still runs")


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0]
    except OSError:
        return "Z"


def test_output_is_redacted_and_terminal_safe(tmp_path: Path) -> None:
    h = hook(tmp_path, "post", 1, r"printf 'token hunter2\n\033[2Jcleared\n'; echo $BUNDLE_TO")
    r = run_one(h, 1, tmp_path, {"BUNDLE_TO": "7"}, 30, lambda s: s.replace("hunter2", "[x]"))
    assert r.exit_code == 0
    assert r.output == "token [x]\n?[2Jcleared\n7"


def test_the_first_failing_hook_stops_its_phase_and_names_itself(tmp_path: Path) -> None:
    hooks = Hooks(
        pre=(
            hook(tmp_path, "pre", 1, "echo one"),
            hook(tmp_path, "pre", 2, "echo nope >&2; exit 3"),
            hook(tmp_path, "pre", 3, "touch never"),
        )
    )
    done: list[HookRun] = []
    with pytest.raises(Failed) as caught:
        run_phase(hooks, "pre", tmp_path, {}, str, done)
    assert (
        caught.value.message
        == "pre-hook 2 `echo nope >&2; exit 3` exited with 3 (last output: nope)"
    )
    assert [r.exit_code for r in done] == [0, 3]
    assert not (tmp_path / "never").exists()


def test_a_switch_stopped_during_a_pre_hook_ends_it_and_changes_nothing(tmp_path: Path) -> None:
    state, root = tmp_path / "state", tmp_path / "root"
    root.mkdir()
    pidfile = tmp_path / "hook-child.pid"
    body = f"sleep 300 & echo $! > {pidfile}; wait"
    b = make_bundle(
        1,
        state,
        {"web.container": U("[Container]\nImage=web\n")},
        {"scripts/hooks/pre-1.sh": (f"#!/bin/sh\n{body}\n".encode(), 0o755)},
    )
    b.manifest["hooks"] = {"pre": [{"path": "scripts/hooks/pre-1.sh", "command": body}]}
    assert push(finish(b), state, root).rc == 0
    where = ["--state", str(state), "--root", str(root)]
    proc = subprocess.Popen(
        [sys.executable, "-B", "-m", "activate", "activate", *where, "--generation", "1"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60  # a hang guard
    while not pidfile.exists() or not pidfile.read_text().strip():
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert err.strip().endswith(
        "interrupted by SIGTERM; nothing changed, no generation stays active"
    )
    child = int(pidfile.read_text())
    for _ in range(100):
        if not Path(f"/proc/{child}").exists() or _state(child) == "Z":
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"the hook's child {child} still runs")
    assert not (state / "current").is_symlink()
