"""docs/getting-started.md, followed literally against a real test server.

The shell commands of the guide's ```sh blocks in sections 3 to 6 ("Start your own project",
"Prepare the server", "First deploy", "Change, look, deploy, go back") run in order, each in a
real bash as a user types it: `bundle` on PATH from this venv, a fresh home folder, a terminal
(ssh asks there to trust the server's host key, and the test answers `yes` as the guide says).
Each must exit 0, and the test checks what the guide promises at that step, on the server too.

Sections 1 and 2 (clone, ./setup.sh, .ci/run, `bundle demo`) are what CI itself does before this
test runs (tests/test_demo.py runs the demo), so they are not repeated here.

What the user does by hand, the test does with a small visible edit, as the guide's prose says:
* after `git commit` in section 3: `address = "your-vps"` in stacks/web1.toml;
* `$EDITOR stacks/web1.toml` in section 6: the site's version from 1.27.3 to 1.27.4.

The machine the user starts from: git with a name and email (~/.gitconfig) and an ~/.ssh/config
whose `Host your-vps` is the test server with its root key; known_hosts is empty. ssh reads its
files from the passwd entry, not from $HOME, so each command runs in its own mount namespace in
which root's home in /etc/passwd is the fresh one.

The test server reaches no public registry: a registries.conf.d mirror on it sends pulls from
docker.io and quay.io to the test registry, which holds busybox images under the scaffold's
repository paths and tags that behave like them over HTTP (nginx serving its html folder on
port 80, node_exporter on its --web.listen-address).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.harness import Registry, Target

REPO = Path(__file__).resolve().parents[1]
GUIDE = REPO / "docs/getting-started.md"
SECTIONS = ("3", "4", "5", "6")
ALIAS = "your-vps"
SITE_PORT = 8080
HOST_KEY_PROMPT = "Are you sure you want to continue connecting"
NODE_EXPORTER = b"""\
# stands in for /bin/node_exporter: serves /metrics on --web.listen-address
addr=:9100
for arg in "$@"; do case $arg in --web.listen-address=*) addr=${arg#*=} ;; esac; done
trap 'exit 0' TERM INT
httpd -f -p "$addr" -h /www & wait $!
"""


def guide_commands(markdown: str) -> list[str]:
    """The lines of the ```sh blocks in the sections named in SECTIONS, in order."""
    commands = []
    for section in re.split(r"^## ", markdown, flags=re.M)[1:]:
        if section.split(".", 1)[0] not in SECTIONS:
            continue
        for block in re.findall(r"^```sh\n(.*?)^```", section, flags=re.M | re.S):
            commands += [line for line in block.splitlines() if line.strip()]
    return commands


def without_comment(command: str) -> str:
    return re.sub(r"\s+#.*$", "", command)


# ---- the machine the user types on ---------------------------------------------------------


@dataclass
class Typed:
    """One command as the user saw it: its exit code, its output and what ssh asked."""

    command: str
    returncode: int
    stdout: str
    stderr: str
    terminal: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


class Terminal:
    """Reads the terminal of one command and answers ssh's host key question with `yes`."""

    def __init__(self, master: int) -> None:
        self.master = master
        self.seen = ""
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        answered = False
        while True:
            try:
                chunk = os.read(self.master, 4096)
            except OSError:  # EIO: every process holding the terminal has ended
                return
            if not chunk:
                return
            self.seen += chunk.decode(errors="replace")
            if not answered and "(yes/no" in self.seen:
                os.write(self.master, b"yes\n")
                answered = True

    def close(self) -> str:
        self.thread.join(timeout=5)
        os.close(self.master)
        return self.seen


@dataclass
class Workstation:
    """A fresh home folder on this machine, with bash, git, ssh and the venv's `bundle`."""

    home: Path
    scratch: Path
    cwd: Path = field(init=False)

    def __post_init__(self) -> None:
        self.cwd = self.home
        self.passwd = self.scratch / "passwd"
        self.passwd.write_text(_passwd_with_root_home(self.home))
        self.cwd_file = self.scratch / "cwd"

    def env(self) -> dict[str, str]:
        bin_dir = Path(sys.executable).parent
        assert (bin_dir / "bundle").exists(), f"no bundle in {bin_dir}"
        return {
            "HOME": str(self.home),
            "USER": "root",
            "LOGNAME": "root",
            "PATH": f"{bin_dir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "TERM": "xterm",
            "LANG": "C.UTF-8",
        }

    def type(self, command: str, timeout: float = 120) -> Typed:
        """Run one line in bash from the current folder; a `cd` in it carries over."""
        script = f'{command}\nstatus=$?\npwd > "$BUNDLE_GUIDE_CWD"\nexit $status\n'
        argv = [
            "unshare", "--mount", "--propagation", "private", "--",
            "sh", "-c",
            'mount --bind "$0" /etc/passwd && exec setsid --ctty --wait bash -c "$1"',
            str(self.passwd), script,
        ]  # fmt: skip
        master, slave = os.openpty()
        env = {**self.env(), "BUNDLE_GUIDE_CWD": str(self.cwd_file)}
        try:
            proc = subprocess.Popen(
                argv, cwd=self.cwd, env=env, stdin=slave, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
        finally:
            os.close(slave)
        terminal = Terminal(master)
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
        typed = Typed(command, proc.returncode, stdout, stderr, terminal.close())
        if self.cwd_file.exists():
            self.cwd = Path(self.cwd_file.read_text().strip())
        return typed


def _passwd_with_root_home(home: Path) -> str:
    lines = []
    for line in Path("/etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == "root":
            fields[5] = str(home)
        lines.append(":".join(fields))
    return "\n".join(lines) + "\n"


def prepare_home(home: Path, target: Target) -> None:
    """git with an identity, and ~/.ssh/config naming the server `your-vps`; nothing else."""
    ssh = home / ".ssh"
    ssh.mkdir(parents=True, mode=0o700)
    key = ssh / "id_ed25519"
    shutil.copy(target.key_path, key)
    key.chmod(0o600)
    (ssh / "config").write_text(
        f"Host {ALIAS}\n    HostName {target.host}\n    User root\n    IdentityFile {key}\n"
    )
    (home / ".gitconfig").write_text("[user]\n\tname = Ada Admin\n\temail = ada@example.org\n")


# ---- the test server as the guide's VPS ------------------------------------------------------


def serve_public_images(registry: Registry, target: Target) -> None:
    """The scaffold's images, from the test registry, under their public names."""
    nginx_cmd = ["httpd", "-f", "-p", "80", "-h", "/usr/share/nginx/html"]
    page = {"usr/share/nginx/html/index.html": b"Welcome to nginx!\n"}
    for tag in ("1.27.3", "1.27.4"):
        registry.push_busybox("library/nginx", tag, page, cmd=nginx_cmd, port=80)
    registry.push_busybox(
        "prometheus/node-exporter",
        "v1.8.2",
        {"bin/node_exporter": NODE_EXPORTER, "www/metrics": b"node_exporter_build_info 1\n"},
        entrypoint=["/bin/sh", "/bin/node_exporter"],
        cmd=[],
        port=9100,
    )
    target.write_file(
        "/etc/containers/registries.conf.d/60-public-mirrors.conf",
        registry.mirrors_conf("docker.io", "quay.io"),
    )


def fetch(url: str, tries: int = 50) -> str:
    """GET a page; a container just started may need a moment to listen."""
    last: Exception | None = None
    for _ in range(tries):
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return r.read().decode()
        except OSError as exc:
            last = exc
            time.sleep(0.1)
    raise AssertionError(f"{url} did not answer: {last}")


def running_image(target: Target, container: str) -> str:
    out = target.ssh(f"podman inspect --format '{{{{.ImageName}}}}' {container}").stdout
    return out.strip()


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, check=True
    ).stdout


def main_pid(target: Target, service: str) -> str:
    return target.ssh(f"systemctl show -p MainPID --value {service}").stdout.strip()


# ---- the story -------------------------------------------------------------------------------


@dataclass
class Story:
    """What the guide promises after each of its commands, checked here and on the server."""

    target: Target
    home: Path
    node_exporter_pid: str = ""

    @property
    def project(self) -> Path:
        return self.home / "infra"

    def edit_stack(self, old: str, new: str) -> None:
        stack = self.project / "stacks/web1.toml"
        text = stack.read_text()
        assert old in text, f"{old!r} not in {stack}"
        stack.write_text(text.replace(old, new, 1))

    # the user's edits ------------------------------------------------------------------------

    def set_address(self) -> None:
        """Section 3, after the commit: set `address` to your server: `address = "your-vps"`."""
        self.edit_stack('address = "web1.example.org"', f'address = "{ALIAS}"')

    def bump_version(self) -> None:
        """Section 6, `$EDITOR stacks/web1.toml`: the site's version from 1.27.3 to 1.27.4."""
        self.edit_stack('version = "1.27.3"', 'version = "1.27.4"')

    # what the user sees ----------------------------------------------------------------------

    def project_written(self, typed: Typed) -> None:
        for rel in ("web1.toml", "web1-staging.toml", "shared/node-exporter.toml"):
            assert (self.project / "stacks" / rel).is_file(), rel

    def committed(self, typed: Typed) -> None:
        assert "stacks/web1.toml" in _git(self.project, "ls-files")

    def checked(self, typed: Typed) -> None:
        assert "web1: ok" in typed.output

    def built_first(self, typed: Typed) -> None:
        assert "web1: built generation 1 (" in typed.output
        assert list((self.project / "bundles/web1").glob("1-*.tar.zst"))

    def shown(self, typed: Typed) -> None:
        assert "site.container" in typed.output
        assert "image docker.io/library/nginx:1.27.3" in typed.output

    def server_prepared(self, typed: Typed) -> None:
        assert HOST_KEY_PROMPT in typed.terminal  # ssh asked, and `yes` was typed
        assert (self.home / ".ssh/known_hosts").stat().st_size > 0
        self.target.ssh("command -v podman && command -v python3")

    def planned(self, typed: Typed) -> None:
        for unit in ("site.container", "node-exporter.container", "backup.timer"):
            assert re.search(rf"^\s+start\s+{re.escape(unit)}", typed.output, re.M), unit

    def switched_first(self, typed: Typed) -> None:
        assert "web1: switch to 1 (first deploy): ok" in typed.output
        assert "Hello from web1 (example.org)" in fetch(self.target.url(SITE_PORT))
        assert running_image(self.target, "site") == "docker.io/library/nginx:1.27.3"

    def status_active(self, typed: Typed) -> None:
        assert re.search(r"web1: generation 1 \(\w+\) is active", typed.output)
        for unit in ("site.container", "node-exporter.container"):
            assert re.search(rf"{re.escape(unit)}\s+active/running\s+pid \d+", typed.output), unit
        self.node_exporter_pid = main_pid(self.target, "node-exporter.service")

    def built_and_diffed(self, typed: Typed) -> None:
        assert "web1: built generation 2 (" in typed.output
        assert "site: 1.27.3 -> 1.27.4" in typed.output
        assert "+Image=docker.io/library/nginx:1.27.4" in typed.output

    def switched_site_only(self, typed: Typed) -> None:
        assert "web1: switch 1 -> 2: ok" in typed.output
        assert "restarted site.container; 4 units left running untouched" in typed.output
        assert running_image(self.target, "site") == "docker.io/library/nginx:1.27.4"
        assert main_pid(self.target, "node-exporter.service") == self.node_exporter_pid
        assert "Hello from web1" in fetch(self.target.url(SITE_PORT))

    def rolled_back(self, typed: Typed) -> None:
        assert "web1: rollback 2 -> 1: ok" in typed.output
        assert running_image(self.target, "site") == "docker.io/library/nginx:1.27.3"
        assert "Hello from web1" in fetch(self.target.url(SITE_PORT))

    def logged(self, typed: Typed) -> None:
        deploys = [" ".join(line.split()[2:]) for line in typed.stdout.splitlines()]
        assert [d.rsplit(" ok ", 1)[0] + " ok" for d in deploys] == [
            "activate to 1 (first deploy) ok",
            "activate 1 -> 2 ok",
            "rollback 2 -> 1 ok",
        ], deploys


# The guide's commands (trailing comments dropped) and what each must show; None: done by hand.
STEPS: list[tuple[str, Callable[[Story, Typed], None] | None]] = [
    ("bundle init ~/infra && cd ~/infra", Story.project_written),
    ('git init && git add -A && git commit -m "stacks"', Story.committed),
    ("bundle check web1", Story.checked),
    ("bundle build web1", Story.built_first),
    ("bundle show web1", Story.shown),
    ("ssh root@your-vps apt-get install -y podman python3", Story.server_prepared),
    ("bundle plan web1", Story.planned),
    ("bundle switch web1", Story.switched_first),
    ("bundle status web1", Story.status_active),
    ("$EDITOR stacks/web1.toml", None),
    ("bundle build web1 && bundle diff web1", Story.built_and_diffed),
    ("bundle switch web1", Story.switched_site_only),
    ("bundle rollback web1", Story.rolled_back),
    ("bundle log web1", Story.logged),
]


# ---- the test --------------------------------------------------------------------------------


@pytest.fixture
def vps(target: Target, registry: Registry) -> Target:
    serve_public_images(registry, target)
    return target


def test_getting_started_guide_followed_literally(vps: Target, tmp_path: Path) -> None:
    guide = GUIDE.read_text()
    commands = guide_commands(guide)
    assert [without_comment(c) for c in commands] == [c for c, _ in STEPS], (
        "the guide's commands changed: update STEPS and what the Story checks"
    )
    # the two edits the user makes by hand, as the guide words them
    assert f'`address = "{ALIAS}"`' in guide
    assert "bump the site's version from 1.27.3 to 1.27.4" in guide
    home = tmp_path / "home"
    prepare_home(home, vps)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    workstation = Workstation(home, scratch)
    story = Story(vps, home)
    # the user's edits, made just before the line they belong to
    edits = {"bundle check web1": story.set_address, "$EDITOR stacks/web1.toml": story.bump_version}
    for command, (_, check) in zip(commands, STEPS, strict=True):
        if edit := edits.get(without_comment(command)):
            edit()
        if check is None:
            continue
        typed = workstation.type(command)
        transcript = f"$ {command}\n{typed.output}{typed.terminal}"
        assert typed.returncode == 0, f"exit {typed.returncode}:\n{transcript}"
        try:
            check(story, typed)
        except AssertionError as e:
            raise AssertionError(f"{e}\nafter:\n{transcript}") from e
