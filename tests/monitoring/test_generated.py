"""vps2's Prometheus and Alertmanager configuration, generated from the stacks it monitors.

The generated files are checked by the tools Prometheus ships (promtool, amtool), the alert
rules are run against synthetic series (promtool test rules), and a change to vps1's stack
shows up in vps2's next bundle.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import yaml

from tests.build.conftest import Project

from .conftest import build, tool


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, check=False)


def jobs(gen: Path) -> dict[str, dict[str, Any]]:
    config = yaml.safe_load((gen / "files/prometheus/prometheus.yml").read_text())
    return {job["job_name"]: job for job in config["scrape_configs"]}


def test_promtool_and_amtool_accept_the_generated_files(project: Project, tmp_path: Path) -> None:
    gen = build(project, "vps2")
    # the container mounts both files in /etc/prometheus; prometheus.yml names rules.yml
    # relative to itself, so the bundle's folder is the same layout
    work = tmp_path / "etc-prometheus"
    shutil.copytree(gen / "files/prometheus", work)
    checked = run(tool("promtool"), "check", "config", "prometheus.yml", cwd=work)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "1 rule files found" in checked.stdout
    rules = run(tool("promtool"), "check", "rules", "rules.yml", cwd=work)
    assert rules.returncode == 0, rules.stdout + rules.stderr
    am = run(tool("amtool"), "check-config", str(gen / "files/alertmanager/alertmanager.yml"))
    assert am.returncode == 0, am.stdout + am.stderr
    # the SMTP password is a secret: a marker in the bundle, completed on the server
    text = (gen / "files/alertmanager/alertmanager.yml").read_text()
    assert "@@bundle-secret:smtp_password@@" in text


def test_scrape_targets_are_the_declared_endpoints_on_tunnel_addresses(project: Project) -> None:
    found = jobs(build(project, "vps2"))
    assert sorted(found) == [
        "vps1/node-exporter",
        "vps1/synapse",
        "vps1/traefik",
        "vps2/alertmanager",
        "vps2/grafana",
        "vps2/node-exporter",
        "vps2/prometheus",
    ]
    synapse = found["vps1/synapse"]
    assert synapse["metrics_path"] == "/_synapse/metrics"
    assert synapse["static_configs"] == [
        {"targets": ["10.8.0.1:9009"], "labels": {"host": "vps1", "service": "synapse"}}
    ]
    assert found["vps1/node-exporter"]["static_configs"][0]["targets"] == ["10.8.0.1:9100"]
    assert found["vps1/traefik"]["static_configs"][0]["targets"] == ["10.8.0.1:8082"]
    assert found["vps2/prometheus"]["static_configs"][0]["targets"] == ["10.8.0.2:9090"]


def test_vps1_serves_its_metrics_where_vps2_scrapes_them(project: Project) -> None:
    gen = build(project, "vps1")
    pod = (gen / "units/quadlet/synapse.pod").read_text()
    # published by the build from the metrics declaration, on the tunnel address only
    assert "PublishPort=127.0.0.1:8008:8008\nPublishPort=10.8.0.1:9009:9009\n" in pod
    homeserver = yaml.safe_load((gen / "files/synapse/homeserver.yaml").read_text())
    assert {"port": 9009, "type": "metrics"}.items() <= homeserver["listeners"][1].items()
    traefik = yaml.safe_load((gen / "files/traefik/traefik.yml").read_text())
    assert traefik["entryPoints"]["metrics"] == {"address": "10.8.0.1:8082"}
    assert traefik["metrics"] == {"prometheus": {"entryPoint": "metrics"}}
    exporter = (gen / "units/quadlet/node-exporter.container").read_text()
    assert "--web.listen-address=10.8.0.1:9100" in exporter
    assert "--collector.textfile.directory=/host/var/lib/node-exporter" in exporter
    # staging is not in the tunnel: nothing published for metrics, Traefik has no metrics port
    staging = build(project, "vps1-staging")
    assert "10.8." not in (staging / "units/quadlet/synapse.pod").read_text()
    assert (
        "metrics"
        not in yaml.safe_load((staging / "files/traefik/traefik.yml").read_text())["entryPoints"]
    )


def test_a_change_to_vps1s_metrics_changes_vps2s_bundle(project: Project) -> None:
    first = build(project, "vps2")
    again = project.run("build", "vps2")
    assert again.returncode == 0 and "up to date" in again.stdout
    project.edit(
        "vps1.toml",
        'metrics = { port = 9009, path = "/_synapse/metrics" }',
        'metrics = { port = 9010, path = "/_synapse/metrics" }',
    )
    second = build(project, "vps2")
    assert second != first and second.name.startswith("2-")
    synapse = jobs(second)["vps1/synapse"]
    assert synapse["static_configs"][0]["targets"] == ["10.8.0.1:9010"]
    diff = project.run("diff", "vps2", "--stat")
    assert diff.returncode == 0, diff.stderr
    assert "files/prometheus/prometheus.yml" in diff.stdout
    # and vps1 follows its own declaration: published port and Synapse's listener
    vps1 = build(project, "vps1")
    assert "PublishPort=10.8.0.1:9010:9010" in (vps1 / "units/quadlet/synapse.pod").read_text()
    assert "- port: 9010" in (vps1 / "files/synapse/homeserver.yaml").read_text()


def test_a_new_monitored_host_gets_its_jobs_and_rules(project: Project) -> None:
    # a third host joins the tunnel: it declares its tunnel and metrics, vps2 lists it
    key = "YWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWE="
    project.write(
        "web3.toml",
        textwrap.dedent(f"""\
            include = ["shared/node-exporter.toml"]

            [host]
            name = "web3"
            address = "web3.example.org"

            [wireguard]
            address = "10.8.0.3"
            public_key = "{key}"
            peers = [{{ host = "vps2" }}]

            [containers.node-exporter]
            command = ["--path.rootfs=/host", "--web.listen-address=10.8.0.3:9100"]
            """),
    )
    project.edit("vps2.toml", 'monitor = ["vps1", "vps2"]', 'monitor = ["vps1", "vps2", "web3"]')
    refused = project.run("check", "vps2")
    assert refused.returncode == 2
    assert (
        'web3 is not a WireGuard peer of vps2: add { host = "web3" } to [wireguard] peers'
        in refused.stderr
    )
    project.edit(
        "vps2.toml",
        '  { host = "vps1", keepalive = 25 },',
        '  { host = "vps1", keepalive = 25 },\n  { host = "web3" },',
    )
    gen = build(project, "vps2")
    assert jobs(gen)["web3/node-exporter"]["static_configs"][0]["targets"] == ["10.8.0.3:9100"]
    rules = yaml.safe_load((gen / "files/prometheus/rules.yml").read_text())
    assert [g["name"] for g in rules["groups"]] == ["vps1", "vps2", "web3"]
    web3 = {r["alert"] for r in rules["groups"][2]["rules"]}
    # no Traefik and no backup script on web3: no certificate or backup rules for it
    assert web3 == {"TargetDown", "UnitDown", "UnitsMissing", "DiskFilling", "DiskAlmostFull"}
    conf = (gen / "files/wireguard-wg0/wg0.conf").read_text()
    assert f"# web3\n[Peer]\nPublicKey = {key}\nAllowedIPs = 10.8.0.3/32\n" in conf


RULE_TESTS = """\
rule_files: [rules.yml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'up{host="vps1", service="synapse", job="vps1/synapse", instance="10.8.0.1:9009"}'
        values: '1 1 0x20'
      - series: 'node_systemd_unit_state{host="vps1", name="synapse.service", state="active", type="simple"}'
        values: '1 1 0x20'
      - series: 'node_systemd_unit_state{host="vps1", name="traefik.service", state="active", type="simple"}'
        values: '1x22'
    alert_rule_test:
      - eval_time: 4m
        alertname: TargetDown
      - eval_time: 8m
        alertname: TargetDown
        exp_alerts:
          - exp_labels: {severity: critical, host: vps1, service: synapse, job: vps1/synapse, instance: "10.8.0.1:9009"}
            exp_annotations: {summary: "synapse on vps1 does not answer on 10.8.0.1:9009"}
      - eval_time: 8m
        alertname: UnitDown
        exp_alerts:
          - exp_labels: {severity: critical, host: vps1, name: synapse.service, state: active, type: simple}
            exp_annotations: {summary: "synapse.service on vps1 is not running"}
      - eval_time: 20m
        alertname: UnitsMissing
        exp_alerts:
          - exp_labels: {severity: warning, host: vps1}
            exp_annotations: {summary: "systemd on vps1 does not know all of its VPS1_UNITS units (not installed, or node-exporter cannot read systemd)"}
          # vps2's node-exporter says nothing at all about its units
          - exp_labels: {severity: warning, host: vps2}
            exp_annotations: {summary: "systemd on vps2 does not know all of its VPS2_UNITS units (not installed, or node-exporter cannot read systemd)"}

  - interval: 1m
    input_series:
      # vps1's last success is at 0 and never again; vps2's backup ran again at 24h
      - series: 'bundle_backup_last_success_timestamp_seconds{host="vps1", exported_host="vps1", job="vps1/node-exporter"}'
        values: '0x1700'
      - series: 'bundle_backup_last_success_timestamp_seconds{host="vps2", exported_host="vps2", job="vps2/node-exporter"}'
        values: '0x1439 86400x260'
    alert_rule_test:
      - eval_time: 25h
        alertname: BackupLate
      - eval_time: 27h
        alertname: BackupLate
        exp_alerts:
          - exp_labels: {severity: critical, host: vps1}
            exp_annotations: {summary: "the nightly backup of vps1 has not reported success for more than 26 hours"}
      - eval_time: 27h
        alertname: BackupNeverReported

  - interval: 1h
    input_series:
      - series: 'up{host="vps2", service="node-exporter", job="vps2/node-exporter", instance="10.8.0.2:9100"}'
        values: '1x30'
    alert_rule_test:
      - eval_time: 27h
        alertname: BackupNeverReported
        exp_alerts:
          - exp_labels: {severity: critical, host: vps1}
            exp_annotations: {summary: "the nightly backup of vps1 has never reported success"}
          - exp_labels: {severity: critical, host: vps2}
            exp_annotations: {summary: "the nightly backup of vps2 has never reported success"}

  - interval: 1m
    input_series:
      # cloud: renewed (a new serial, 90 days) while the old serial lingers; matrix: 10 days left
      - series: 'traefik_tls_certs_not_after{host="vps1", cn="cloud.example.org", sans="cloud.example.org", serial="1"}'
        values: '864000x180'
      - series: 'traefik_tls_certs_not_after{host="vps1", cn="cloud.example.org", sans="cloud.example.org", serial="2"}'
        values: '7776000x180'
      - series: 'traefik_tls_certs_not_after{host="vps1", cn="matrix.example.org", sans="matrix.example.org", serial="3"}'
        values: '864000x180'
    alert_rule_test:
      - eval_time: 2h
        alertname: CertificateExpiresSoon
        exp_alerts:
          - exp_labels: {severity: warning, host: vps1, cn: matrix.example.org, sans: matrix.example.org}
            exp_annotations: {summary: "the certificate for matrix.example.org on vps1 expires in 9d 22h 0m 0s"}

  - interval: 1m
    input_series:
      # 10% left on /, losing 10 units a minute: empty in under 17 hours
      - series: 'node_filesystem_avail_bytes{host="vps1", mountpoint="/", fstype="ext4", device="/dev/vda1"}'
        values: '10000-10x120'
      - series: 'node_filesystem_size_bytes{host="vps1", mountpoint="/", fstype="ext4", device="/dev/vda1"}'
        values: '100000x120'
      # a tmpfs filling up is no concern
      - series: 'node_filesystem_avail_bytes{host="vps1", mountpoint="/run", fstype="tmpfs", device="tmpfs"}'
        values: '10000-10x120'
      - series: 'node_filesystem_size_bytes{host="vps1", mountpoint="/run", fstype="tmpfs", device="tmpfs"}'
        values: '100000x120'
    alert_rule_test:
      - eval_time: 90m
        alertname: DiskFilling
        exp_alerts:
          - exp_labels: {severity: warning, host: vps1, mountpoint: /, fstype: ext4, device: /dev/vda1}
            exp_annotations: {summary: "/ on vps1 will be full within a day"}
      - eval_time: 90m
        alertname: DiskAlmostFull
"""


def test_alert_rules_fire_when_they_should(project: Project, tmp_path: Path) -> None:
    gen = build(project, "vps2")
    tests = RULE_TESTS
    for host, built in (("vps1", build(project, "vps1")), ("vps2", gen)):
        # what UnitDown watches: every unit the bundle keeps running
        units = json.loads((built / "manifest.json").read_text())["units"].values()
        kinds = ("container", "pod", "service", "timer")
        running = [u for u in units if u["enable"] and u["kind"] in kinds]
        tests = tests.replace(f"{host.upper()}_UNITS", str(len(running)))
    work = tmp_path / "rules"
    work.mkdir()
    shutil.copy(gen / "files/prometheus/rules.yml", work / "rules.yml")
    (work / "tests.yml").write_text(tests)
    result = run(tool("promtool"), "test", "rules", "tests.yml", cwd=work)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_backup_metric_contract_is_valid_exposition_text(tmp_path: Path) -> None:
    # what docs/monitoring.md tells the backup script to write, checked by promtool
    doc = (Path(__file__).resolve().parents[2] / "docs/monitoring.md").read_text()
    block = doc.split("```prometheus\n", 1)[1].split("```", 1)[0]
    assert 'bundle_backup_last_success_timestamp_seconds{host="vps1"}' in block
    result = subprocess.run(
        [tool("promtool"), "check", "metrics"], input=block, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_tunnel_unit_passes_systemd_analyze(project: Project, tmp_path: Path) -> None:
    gen = build(project, "vps2")
    work = tmp_path / "units"
    work.mkdir()
    shutil.copy(gen / "units/systemd/wireguard-wg0.service", work)
    result = run("systemd-analyze", "verify", "./wireguard-wg0.service", cwd=work)
    # systemd-analyze only warns (exit 0) on unknown keys: any output is a failure
    assert result.returncode == 0 and result.stdout == result.stderr == "", result.stderr
    manifest = json.loads((gen / "manifest.json").read_text())
    unit = manifest["units"]["wireguard-wg0.service"]
    assert unit["kind"] == "service" and unit["enable"] is True
    assert unit["files"] == ["files/wireguard-wg0/wg0.conf", "units/systemd/wireguard-wg0.service"]
    assert manifest["files"]["files/wireguard-wg0/wg0.conf"]["mode"] == "0600"
    assert manifest["rendered"]["files/wireguard-wg0/wg0.conf"]["secrets"] == [
        "wireguard_private_key"
    ]
    # every service of vps2 binds the tunnel address, so each starts after the tunnel
    for name in ("prometheus", "alertmanager", "grafana", "node-exporter"):
        assert "wireguard-wg0.service" in manifest["units"][f"{name}.container"]["requires"]
