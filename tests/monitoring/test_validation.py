"""Bad metrics, tunnel and cross-host declarations: refused with file:line, nothing built."""

from __future__ import annotations

import pytest

from tests.build.conftest import Project


def line_of(project: Project, rel: str, text: str) -> int:
    lines = (project.stacks / rel).read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if text in line)


def refused(project: Project, host: str, *expected: str) -> str:
    result = project.run("build", host)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1].endswith("nothing was built or changed")
    for text in expected:
        assert text in result.stderr, f"{text!r} not in:\n{result.stderr}"
    assert not (project.bundles / host).exists() or not any((project.bundles / host).glob("[0-9]*"))
    return result.stderr


SYNAPSE_METRICS = 'metrics = { port = 9009, path = "/_synapse/metrics" }'


def test_bad_metrics_declarations(project: Project) -> None:
    project.edit("vps1.toml", SYNAPSE_METRICS, 'metrics = { port = 0, path = "_synapse/metrics" }')
    line = line_of(project, "vps1.toml", 'metrics = { port = 0, path = "_synapse/metrics" }')
    refused(
        project,
        "vps1",
        f"stacks/vps1.toml:{line}: containers.synapse.metrics.port: must be between 1 and 65535",
        f"stacks/vps1.toml:{line}: containers.synapse.metrics.path: '_synapse/metrics': "
        'write the URL path alone, like "/metrics"',
    )


def test_metrics_without_a_port_or_with_unknown_keys(project: Project) -> None:
    project.edit("vps1.toml", SYNAPSE_METRICS, 'metrics = { path = "/m", scheme = "https" }')
    refused(
        project,
        "vps1",
        "containers.synapse.metrics.port: required key missing: set port in "
        "[containers.synapse.metrics]",
        "containers.synapse.metrics.scheme: unknown key (allowed here: path, port)",
    )


def test_metrics_on_a_port_the_host_already_publishes(project: Project) -> None:
    project.edit("vps1.toml", 'ports = ["127.0.0.1:9000:9000"]', 'ports = ["10.8.0.1:9009:80"]')
    line = line_of(project, "vps1.toml", SYNAPSE_METRICS)
    refused(
        project,
        "vps1",
        f"stacks/vps1.toml:{line}: containers.synapse.metrics.port: the metrics need "
        "10.8.0.1:9009 published, but pods.authentik already publishes 10.8.0.1:9009/tcp: "
        "choose another port",
    )


def test_two_containers_of_a_pod_with_metrics_on_one_port(project: Project) -> None:
    project.edit(
        "vps1.toml",
        'secrets = [{ name = "synapse_db_password", env = "POSTGRES_PASSWORD" }]',
        'secrets = [{ name = "synapse_db_password", env = "POSTGRES_PASSWORD" }]\n'
        "metrics = { port = 9009 }",
    )
    refused(
        project,
        "vps1",
        "containers.synapse-db.metrics.port: containers.synapse declares metrics on the same "
        "port: choose another",
    )


def test_a_public_port_on_a_tunnel_only_host(project: Project) -> None:
    project.edit("vps2.toml", 'ports = ["10.8.0.2:3000:3000"]', 'ports = ["3000:3000"]')
    project.edit("vps2.toml", 'ports = ["10.8.0.2:9093:9093"]', 'ports = ["203.0.113.7:9093:9093"]')
    grafana = line_of(project, "vps2.toml", 'ports = ["3000:3000"]')
    alertmanager = line_of(project, "vps2.toml", "203.0.113.7")
    refused(
        project,
        "vps2",
        f"stacks/vps2.toml:{grafana}: containers.grafana.ports[0]: '3000:3000' publishes on "
        "every address, but vps2 is reachable only over WireGuard "
        '([host] expose = "wireguard"): write "10.8.0.2:3000:3000"',
        f"stacks/vps2.toml:{alertmanager}: containers.alertmanager.ports[0]: "
        "'203.0.113.7:9093:9093' publishes on 203.0.113.7, but vps2",
    )
    # loopback is not public: allowed
    project.edit("vps2.toml", 'ports = ["3000:3000"]', 'ports = ["127.0.0.1:3000:3000"]')
    project.edit("vps2.toml", "203.0.113.7:9093:9093", "10.8.0.2:9093:9093")
    assert project.run("build", "vps2").returncode == 0


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            'expose = "wireguard"',
            'expose = "vpn"',
            'host.expose: must be "public" or "wireguard"',
        ),
        (
            '[wireguard]\naddress = "10.8.0.2"',
            '[wireguard]\nenabled = false\naddress = "10.8.0.2"',
            'host.expose: is "wireguard" but the host has no [wireguard] table (or it is disabled)',
        ),
        (
            'address = "10.8.0.2"',
            'address = "10.8.0.2/24"',
            "wireguard.address: '10.8.0.2/24' is not an IP address: write the address alone",
        ),
        (
            'public_key = "q8TkMBDNyMMGaAgpLGWND5Xt27Qoz7RCFvgd0CmdJA4="',
            'public_key = "q8TkMBDNyMMGaAgpLGWND5Xt27Qoz7RCFvgd0CmdJA4"',
            "wireguard.public_key: is not a WireGuard public key",
        ),
        (
            '{ name = "laptop", public_key',
            '{ name = "laptop", host = "vps1", public_key',
            "wireguard.peers[1]: give host (another stack",
        ),
        (
            'allowed_ips = ["10.8.0.10/32"]',
            "allowed_ips = []",
            "wireguard.peers[1]: a peer given by public_key needs allowed_ips",
        ),
        (
            'allowed_ips = ["10.8.0.10/32"]',
            'allowed_ips = ["10.8.0.10/24"]',
            "wireguard.peers[1].allowed_ips[0]: '10.8.0.10/24' is not a network",
        ),
        (
            '{ host = "vps1", keepalive = 25 }',
            '{ host = "vps3", keepalive = 25 }',
            "wireguard.peers[0].host: stacks/vps3.toml: no stack for host 'vps3'",
        ),
        (
            'monitor = ["vps1", "vps2"]',
            'monitor = ["vps1", "vps3"]',
            "prometheus.yml.j2:16: undefined template variable: no stack for host 'vps3' in hosts",
        ),
        (
            'monitor = ["vps1", "vps2"]',
            'monitor = ["vps1-staging", "vps2"]',
            "undefined template variable: vps1-staging has no [wireguard] table (or it is "
            "disabled): its metrics cannot be scraped over the tunnel",
        ),
    ],
)
def test_bad_tunnel_declarations(project: Project, old: str, new: str, message: str) -> None:
    project.edit("vps2.toml", old, new)
    refused(project, "vps2", message)


def test_a_peer_that_does_not_list_this_host_back(project: Project) -> None:
    project.edit("vps2.toml", '  { host = "vps1", keepalive = 25 },\n', "")
    line = line_of(project, "vps1.toml", 'peers = [{ host = "vps2"')
    refused(
        project,
        "vps1",
        f"stacks/vps1.toml:{line}: wireguard.peers[0].host: vps2 does not list vps1 among its "
        'peers: add { host = "vps1" } to [wireguard] peers in vps2.toml',
    )


def test_another_hosts_stack_errors_are_reported_with_its_own_lines(project: Project) -> None:
    project.edit("vps1.toml", 'version = "v1.120.2"', 'verison = "v1.120.2"')
    typo = line_of(project, "vps1.toml", "verison")
    peer = line_of(project, "vps2.toml", "peers = [")
    refused(
        project,
        "vps2",
        f"stacks/vps1.toml:{typo}: containers.synapse.verison: unknown key",
        f"stacks/vps2.toml:{peer}: wireguard.peers[0].host: the stack of vps1 has problems",
    )


def test_a_broken_stack_read_by_a_template_only(project: Project) -> None:
    # vps1-staging is no peer of vps2: only the template reads it, through `hosts`
    project.edit("vps2.toml", 'monitor = ["vps1", "vps2"]', 'monitor = ["vps1-staging", "vps2"]')
    project.edit("vps1-staging.toml", "[wireguard]\nenabled = false\n", "[wireguard]\nenabld = 1\n")
    line = line_of(project, "vps1-staging.toml", "enabld")
    refused(
        project,
        "vps2",
        f"stacks/vps1-staging.toml:{line}: wireguard.enabld: unknown key",
        "stacks/templates/prometheus/prometheus.yml.j2:16: reads a host whose stack has "
        "problems (listed with its file)",
    )
