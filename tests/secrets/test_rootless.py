"""Secrets on a rootless host: delivered into the user's own state folder, readable by it only,
given to its rootless containers, and nowhere else on the server."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path
from typing import Any

from tests.harness import Target
from tests.server.test_rootless import USER, as_user, prepare_user

from .conftest import STACK, VALUES, SecretsProject, leaks
from .test_on_server import ROTATED, fetch, files_of, project_for

STATE = f"/home/{USER}/.local/state/bundle"
ROOTLESS = STACK.replace(
    'address = "web1.example.org"',
    f'address = "web1.example.org"\nssh_user = "{USER}"\nrootless = true\nconfirm_timeout = 5',
)


def in_container(t: Target, container: str, command: str) -> str:
    """`podman exec` in a login of the user, as a person with a shell there would do it."""
    argv = [*t.ssh_argv()[:-1], f"{USER}@{t.host}"]
    done = subprocess.run(
        [*argv, "--", f"podman exec {container} sh -c {shlex.quote(command)}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def user_files(t: Target) -> list[tuple[str, bytes]]:
    """The user's state and configuration folders, and the journal."""
    out = files_of(t, f"home/{USER}/.local/state", f"home/{USER}/.config")
    out.append(("journalctl -b", t.ssh("journalctl -b --no-pager -o cat").stdout.encode()))
    return out


def test_secrets_on_a_rootless_host(tmp_path: Path, target: Target, registry: Any) -> None:
    t = target
    prepare_user(t)
    p: SecretsProject = project_for(tmp_path, t, ROOTLESS)
    config = Path(p.env["HOME"]) / ".ssh/config"
    config.write_text(config.read_text().replace("User root", f"User {USER}"))
    p.set_all()
    switched = p.json("switch", "web1")
    assert switched["result"] == "ok", switched
    assert fetch(t, 8080) == "page of web1\n"

    assert in_container(t, "web", 'printf %s "$API_TOKEN"') == VALUES["api_token"]
    assert in_container(t, "web", "cat /run/secrets/tls.key") == VALUES["tls_key"]
    assert in_container(t, "db", 'printf %s "$DB_PASSWORD"') == VALUES["db_password"]
    conf = in_container(t, "web", "cat /etc/app.conf")
    assert f'password = "{VALUES["db_password"]}"' in conf
    listing = t.ssh(
        f"stat -c '%a %U' {STATE}/secrets {STATE}/secrets/db_password {STATE}/secrets/db_password/*"
    ).stdout.splitlines()
    assert listing == ["700 apps", "700 apps", "600 apps"]
    assert "db_password" not in t.ssh("podman secret ls --format '{{.Name}}'").stdout  # root's

    # rotating one secret restarts exactly the units that use it, under the user's manager
    other = as_user(t, "systemctl --user show -p MainPID --value other.service")
    p.set("web1", "db_password", ROTATED)
    switched = p.json("switch", "web1")
    assert switched["result"] == "ok", switched
    assert switched["plan"]["restart"] == ["db.container", "web.container"]
    assert as_user(t, "systemctl --user show -p MainPID --value other.service") == other
    assert in_container(t, "db", 'printf %s "$DB_PASSWORD"') == ROTATED

    found = user_files(t)
    outside = [
        (w, d) for w, d in found if not w.startswith((f"{STATE}/secrets/", f"{STATE}/rendered/"))
    ]
    assert len(outside) > 30
    assert leaks(outside, {**VALUES, "rotated": ROTATED}) == []
    inside = [(w, d) for w, d in found if (w, d) not in outside]
    assert leaks(inside, {"rotated": ROTATED})  # the search does find them where they belong
