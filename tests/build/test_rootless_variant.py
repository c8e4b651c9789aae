"""The shipped rootless variant of vps1: it builds in a fresh clone, podman's quadlet generator
accepts its units as a user's, and its Caddyfile passes `caddy validate` and routes exactly
vps1's vars.routes."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from tests.build.conftest import REPO, Project, quadlet_dryrun

HOST = "vps1-rootless"
# a new network namespace: only a loopback
OFFLINE = ("unshare", "--net", "--map-root-user")


def built(project: Project, host: str = HOST) -> Path:
    result = project.run("build", host, "--json")
    assert result.returncode == 0, result.stderr
    return Path(json.loads(result.stdout)["path"])


def routes() -> dict[str, dict[str, object]]:
    return tomllib.loads((REPO / "stacks/vps1.toml").read_text())["vars"]["routes"]


def test_builds_without_secrets(project: Project) -> None:
    result = project.run("build", HOST, "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["created"] and info["units"] > 5
    assert info["secrets_unset"]  # a fresh clone has none, and builds all the same
    manifest = json.loads((Path(info["path"]) / "manifest.json").read_text())
    assert manifest["rootless_user"] == "apps"


def test_turns_off_what_cannot_run_rootless(project: Project) -> None:
    gen = built(project)
    quadlet = gen / "units/quadlet"
    assert (quadlet / "caddy.container").is_file()
    assert not (quadlet / "traefik.container").exists()
    assert not list(gen.rglob("*wireguard*")) and not list(gen.rglob("*wg0*"))
    # what the server runs and mounts (the switcher's own code, in activate/, is not the stack's)
    made = [p for d in ("units", "files") for p in (gen / d).rglob("*") if p.is_file()]
    text = "\n".join(p.read_text() for p in made)
    assert "podman.sock" not in text
    assert "10.8.0." not in text
    assert "/var/lib/bundle" not in text
    caddy = (quadlet / "caddy.container").read_text()
    assert "Image=docker.io/library/caddy:2.8.4" in caddy
    assert "Network=host" in caddy
    assert "Volume=/home/apps/.local/state/bundle/current/files/caddy/Caddyfile:" in caddy


def test_backs_up_as_the_user(project: Project) -> None:
    """vps1's nightly backup, as user units run by apps (docs/rootless.md)."""
    gen = built(project)
    service = (gen / "units/systemd/backup.service").read_text()
    assert "ExecStart=/usr/bin/python3 -B /home/apps/.local/state/bundle/current/scripts/" in (
        service
    )
    assert "network-online.target" not in service  # the user's manager has none
    assert "WantedBy=timers.target" in (gen / "units/systemd/backup.timer").read_text()
    plan = json.loads((gen / "scripts/backup.json").read_text())
    assert plan["rootless"] is True and plan["user"] == "apps"
    assert plan["method"] == "stop"
    assert plan["state_dir"] == "/home/apps/.local/state/bundle"
    # the user cannot write /var/lib/node-exporter; node-exporter reads the default instead
    assert plan["metrics_file"] == "~/.local/state/node-exporter/backup.prom"
    exporter = (gen / "units/quadlet/node-exporter.container").read_text()
    assert "--collector.textfile.directory=/host/home/apps/.local/state/node-exporter" in exporter
    for path in plan["secrets"].values():
        assert path.startswith("/home/apps/.local/state/bundle/rendered/"), path


def test_quadlet_user_generator_accepts_every_unit(
    project: Project, quadlet_bin: Path, tmp_path: Path
) -> None:
    gen = built(project)
    units = tmp_path / "units"
    shutil.copytree(gen / "units/quadlet", units)
    result = quadlet_dryrun(quadlet_bin, units, user=True)
    assert result.returncode == 0, result.stderr
    problems = [
        line for line in result.stderr.splitlines() if "Loading source unit file" not in line
    ]
    assert problems == [], "\n".join(problems)
    manifest = json.loads((gen / "manifest.json").read_text())
    quadlet_units = [
        u
        for u in manifest["units"].values()
        if u["kind"] in ("container", "pod", "volume", "network")
    ]
    assert len(quadlet_units) == len(list(units.iterdir()))
    for unit in quadlet_units:
        assert f"---{unit['service']}---" in result.stdout, f"quadlet made no {unit['service']}"
    for source in units.iterdir():
        text = source.read_text()
        assert "WantedBy=default.target" in text, source.name
        assert "multi-user.target" not in text, source.name


@pytest.fixture(scope="module")
def caddy() -> str:
    found = shutil.which("caddy")
    if found is None:
        pytest.fail("caddy is not installed (apt-get install caddy; .ci/run does)", pytrace=False)
    return found


def validate(caddy: str, caddyfile: Path, home: Path) -> subprocess.CompletedProcess[str]:
    """`caddy validate` adapts and provisions without obtaining certificates; it runs in a new
    network namespace (only a loopback) so that nothing it might try reaches the network."""
    home.mkdir(exist_ok=True)
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "XDG_DATA_HOME": str(home / "data"),
        "XDG_CONFIG_HOME": str(home / "config"),
    }
    return subprocess.run(
        [*OFFLINE, caddy, "validate", "--adapter", "caddyfile", "--config", str(caddyfile)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_caddyfile_is_valid(project: Project, caddy: str, tmp_path: Path) -> None:
    caddyfile = built(project) / "files/caddy/Caddyfile"
    result = validate(caddy, caddyfile, tmp_path / "home")
    assert result.returncode == 0, result.stderr
    assert "Valid configuration" in result.stdout + result.stderr
    # it adapted and provisioned only: no certificate was asked for
    assert not re.search(r"obtain|acme|challenge", result.stderr, re.I), result.stderr


def test_caddy_validate_refuses_a_broken_caddyfile(caddy: str, tmp_path: Path) -> None:
    bad = tmp_path / "Caddyfile"
    bad.write_text("cloud.example.org {\n\treverse_prox 127.0.0.1:8081\n}\n")
    result = validate(caddy, bad, tmp_path / "home")
    assert result.returncode != 0
    assert "reverse_prox" in result.stderr


def site_blocks(caddyfile: str) -> dict[str, str]:
    """Site address -> the block's body, for the top-level blocks that are sites."""
    sites = {}
    for m in re.finditer(r"^([^\s#{][^\n{]*?)[ \t]*\{\n(.*?)^\}", caddyfile, re.M | re.S):
        address = m.group(1)
        if not address.startswith("("):
            sites[address] = m.group(2)
    return sites


def test_caddyfile_routes_exactly_the_routes(project: Project) -> None:
    gen = built(project)
    sites = site_blocks((gen / "files/caddy/Caddyfile").read_text())
    want = {f"{r['subdomain']}.example.org": r["port"] for r in routes().values()}
    assert set(sites) == set(want)
    for address, port in want.items():
        proxies = re.findall(r"reverse_proxy (\S+)", sites[address])
        assert proxies == [f"127.0.0.1:{port}"], (address, proxies)
        assert "import security_headers" in sites[address]
    nextcloud = sites[f"{routes()['nextcloud']['subdomain']}.example.org"]
    for dav in ("carddav", "caldav"):
        assert f"redir /.well-known/{dav} /remote.php/dav/ 301" in nextcloud
    # the same routes as Traefik's on vps1
    assert project.run("build", "vps1").returncode == 0
    prod = next((project.bundles / "vps1").glob("1-*[0-9a-f]"))
    traefik = re.findall(r"Host\(`([^`]+)`\)", (prod / "files/traefik/dynamic.yml").read_text())
    assert set(traefik) == set(sites)


def test_caddyfile_follows_a_changed_route(project: Project) -> None:
    project.edit(
        "vps1.toml",
        'routes.hedgedoc = { subdomain = "notes", port = 3000 }',
        'routes.hedgedoc = { subdomain = "pad", port = 3001 }',
    )
    project.edit("vps1.toml", 'ports = ["127.0.0.1:3000:3000"]', 'ports = ["127.0.0.1:3001:3000"]')
    sites = site_blocks((built(project) / "files/caddy/Caddyfile").read_text())
    assert "notes.example.org" not in sites
    assert "reverse_proxy 127.0.0.1:3001" in sites["pad.example.org"]


def test_vps2_is_unaffected_by_the_variant(project: Project) -> None:
    with_variant = built(project, "vps2")
    (project.stacks / f"{HOST}.toml").unlink()
    shutil.rmtree(project.bundles)
    without = built(project, "vps2")
    for rel in ("files/prometheus/prometheus.yml", "files/prometheus/rules.yml"):
        assert (with_variant / rel).read_bytes() == (without / rel).read_bytes(), rel
    assert HOST not in (with_variant / "files/prometheus/prometheus.yml").read_text()
