"""`bundle export HOST --kube`: every shipped stack exports and validates strictly against the
Kubernetes version k3s ships; the output is byte-identical on a rebuild; what does not
translate is listed; secrets stay names."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.build.conftest import REPO, Project, make_project
from tests.secrets.conftest import VALUES, make_secrets_project

K3S_KUBERNETES = "1.37.0"  # the k3s v1.37 line; the newest schemas kubernetes-validate ships
SHIPPED = sorted(p.stem for p in (REPO / "stacks").glob("*.toml"))


def objects(folder: Path) -> dict[str, dict[str, Any]]:
    """The objects kustomization.yaml lists, by file name; checks it lists exactly the files."""
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    assert kustomization == {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": sorted(
            p.name for p in folder.glob("*.yaml") if p.name != "kustomization.yaml"
        ),
    }
    return {
        name: yaml.safe_load((folder / name).read_text()) for name in kustomization["resources"]
    }


_LABEL = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")  # DNS-1035: Services, volumes, ports
_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
_LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?")


def api_rules(obj: dict[str, Any]) -> list[str]:
    """What the API server checks beyond the schema: the form of names and label values."""
    bad = []
    meta = obj["metadata"]
    if not _LABEL.fullmatch(meta["name"]) and not (
        obj["kind"] in ("ConfigMap", "Secret") and _SUBDOMAIN.fullmatch(meta["name"])
    ):
        bad.append(f"name {meta['name']!r}")
    for value in meta.get("labels", {}).values():
        if not _LABEL_VALUE.fullmatch(value):
            bad.append(f"label value {value!r}")

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                named = path.endswith(("containers", "volumes", "volumeMounts", "ports"))
                if named and k == "name" and not _LABEL.fullmatch(str(v)):
                    bad.append(f"{path}.name {v!r}")
                if k in ("labels", "matchLabels") and isinstance(v, dict):
                    bad.extend(
                        f"label value {x!r}" for x in v.values() if not _LABEL_VALUE.fullmatch(x)
                    )
                walk(v, f"{path}.{k}")
        elif isinstance(node, list):
            for item in node:
                walk(item, path)

    walk(obj.get("spec", {}), "spec")
    return bad


def tree(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def export(project: Project, host: str, *more: str) -> Any:
    r = project.run("export", host, "--kube", *more)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


@pytest.mark.parametrize("host", SHIPPED)
def test_every_shipped_stack_exports_and_validates_strictly(project: Project, host: str) -> None:
    export(project, host)
    found = objects(project.root / "export" / host)
    assert found
    for name, obj in found.items():
        try:
            kubernetes_validate.validate(obj, K3S_KUBERNETES, strict=True)
        except kubernetes_validate.ValidationError as e:
            path = ".".join(str(p) for p in e.path)
            pytest.fail(f"{host}/{name}: {path}: {e.message}")
        assert api_rules(obj) == [], name
        assert name == f"{obj['kind'].lower()}-{obj['metadata']['name']}.yaml"
        assert obj["metadata"].get("namespace", host) == host


def test_vps1_maps_pods_routes_secrets_and_probes(project: Project) -> None:
    r = export(project, "vps1", "--ingress-class", "nginx")
    out = project.root / "export" / "vps1"
    found = objects(out)
    # the four containers of the nextcloud pod share one Pod, a StatefulSet: they are stateful
    nextcloud = found["statefulset-nextcloud.yaml"]["spec"]["template"]["spec"]
    assert [c["name"] for c in nextcloud["containers"]] == [
        "nextcloud",
        "nextcloud-cron",
        "nextcloud-db",
        "nextcloud-redis",
    ]
    web = nextcloud["containers"][0]
    assert web["image"] == "docker.io/library/nextcloud:29.0.1-apache"
    assert {
        "name": "MYSQL_PASSWORD",
        "valueFrom": {"secretKeyRef": {"name": "nextcloud-db-password", "key": "value"}},
    } in web["env"]
    assert web["readinessProbe"]["exec"]["command"] == [
        "/bin/sh",
        "-c",
        "curl -fsS http://127.0.0.1/status.php",
    ]
    assert web["readinessProbe"]["periodSeconds"] == 60
    # the rendered php.ini is a ConfigMap, mounted where the quadlet unit mounts it
    ini = found["configmap-nextcloud-zz-bundle-ini.yaml"]["data"]["zz-bundle.ini"]
    assert "memory_limit = 1G" in ini
    assert {
        "name": "nextcloud-zz-bundle-ini",
        "mountPath": "/usr/local/etc/php/conf.d/zz-bundle.ini",
        "subPath": "zz-bundle.ini",
        "readOnly": True,
    } in web["volumeMounts"]
    # a route: an Ingress of the class asked for, to the Service of the port the pod publishes
    ingress = found["ingress-nextcloud.yaml"]["spec"]
    assert ingress["ingressClassName"] == "nginx"
    assert ingress["rules"][0]["host"] == "cloud.example.org"
    assert ingress["rules"][0]["http"]["paths"][0]["backend"]["service"] == {
        "name": "nextcloud-8081",
        "port": {"number": 8081},
    }
    service = found["service-nextcloud-8081.yaml"]["spec"]
    assert service["type"] == "ClusterIP"  # published on 127.0.0.1: only the proxy reached it
    assert service["ports"][0]["targetPort"] == 80
    assert "persistentvolumeclaim-nextcloud-data.yaml" in found
    # what does not translate: in the README and in the command's output alike
    readme = (out / "README.md").read_text()
    for where in (
        "containers.traefik.networks",
        "wireguard",
        "backup",
        "containers.nextcloud-redis.auto_update",
    ):
        assert f"| `{where}` |" in readme
        assert f"    {where}: " in r.stdout
    assert "--from-file=value=/dev/stdin" in readme
    assert "nextcloud-db-password" in r.stdout


def test_rebuild_is_byte_identical(project: Project, tmp_path: Path) -> None:
    export(project, "vps1")
    first = tree(project.root / "export" / "vps1")
    other = make_project(tmp_path / "again")
    export(other, "vps1", "--out", str(tmp_path / "elsewhere"))
    export(project, "vps1")
    assert tree(project.root / "export" / "vps1") == first
    assert tree(tmp_path / "elsewhere") == first


def test_a_stack_change_replaces_the_whole_export(project: Project) -> None:
    export(project, "vps1")
    out = project.root / "export" / "vps1"
    assert (out / "statefulset-hedgedoc.yaml").exists()
    project.edit("vps1.toml", "[pods.hedgedoc]\n", "[pods.hedgedoc]\nenabled = false\n")
    project.edit(
        "vps1.toml", 'description = "HedgeDoc"\n', 'description = "HedgeDoc"\nenabled = false\n'
    )
    project.edit(
        "vps1.toml",
        'description = "Postgres for HedgeDoc"\n',
        'description = "Postgres for HedgeDoc"\nenabled = false\n',
    )
    project.edit("vps1.toml", 'routes.hedgedoc = { subdomain = "notes", port = 3000 }\n', "")
    export(project, "vps1")
    assert not list(out.glob("*hedgedoc*"))
    assert not list(out.parent.glob(".vps1.*"))  # nothing left beside it


def test_secret_values_never_reach_the_export(tmp_path: Path) -> None:
    p = make_secrets_project(tmp_path / "project")
    p.set_all()
    r = p.run("export", "web1", "--kube")
    assert r.returncode == 0, r.stdout + r.stderr
    out = p.root / "export" / "web1"
    files = tree(out)
    for value in VALUES.values():
        for name, data in files.items():
            assert value.encode() not in data, f"{name} holds a secret value"
        assert value not in r.stdout + r.stderr
    # the config file embedding two secrets is a Secret reference, its text kept with markers
    assert not (out / "configmap-web-app-conf.yaml").exists()
    assert b"@@bundle-secret:db_password@@" in files["secret-files/web-app-conf/app.conf"]
    web = yaml.safe_load(files["deployment-web.yaml"])["spec"]["template"]["spec"]
    assert {
        "name": "web-app-conf",
        "secret": {
            "secretName": "web-app-conf",
            "items": [{"key": "app.conf", "path": "app.conf", "mode": 0o600}],
        },
    } in web["volumes"]
    mount = {
        "name": "secret-tls-key",
        "mountPath": "/run/secrets/tls.key",
        "subPath": "value",
        "readOnly": True,
    }
    assert mount in web["containers"][0]["volumeMounts"]
    # the secrets and the secret config file, by name, as the Secrets to create first
    assert "    api-token, db-password, tls-key, web-app-conf\n" in r.stdout
    readme = files["README.md"].decode()
    assert (
        "create secret generic web-app-conf --from-file=app.conf=secret-files/web-app-conf/app.conf"
        in readme
    )
    assert "create secret generic api-token --from-file=value=/dev/stdin" in readme


TIMER_STACK = """\
[host]
name = "web1"
address = "web1.example.org"

[containers.web]
image = "registry.test:5000/bundle/web"
digest = "sha256:{digest}"
ports = ["0.0.0.0:8080:8080"]
user = "1000:1000"
health = {{ cmd = "wget -qO- http://127.0.0.1:8080/", interval = "15s", start_period = "1m" }}

[scripts.prune]
run = "find /tmp -mtime +7 -delete"
on_calendar = "*-*-* 04:30:00"

[scripts.odd]
run = "true"
on_calendar = "Mon..Fri 06:00"
"""


def test_timers_images_and_users(project: Project) -> None:
    digest = "a" * 64
    project.write("web1.toml", TIMER_STACK.format(digest=digest))
    r = export(project, "web1")
    found = objects(project.root / "export" / "web1")
    for obj in found.values():
        kubernetes_validate.validate(obj, K3S_KUBERNETES, strict=True)
    web = found["deployment-web.yaml"]["spec"]["template"]["spec"]["containers"][0]
    assert web["image"] == f"registry.test:5000/bundle/web@sha256:{digest}"
    assert web["securityContext"] == {"runAsUser": 1000, "runAsGroup": 1000}
    assert web["readinessProbe"]["initialDelaySeconds"] == 60
    assert found["service-web-8080.yaml"]["spec"]["type"] == "LoadBalancer"
    cron = found["cronjob-prune.yaml"]["spec"]
    assert (cron["schedule"], cron["suspend"]) == ("30 4 * * *", True)
    assert "find /tmp -mtime +7 -delete" in found["configmap-prune-script.yaml"]["data"]["prune.sh"]
    # a calendar cron cannot say is listed, not guessed
    assert "cronjob-odd.yaml" not in found
    assert (
        "    scripts.odd: a host script on a timer (cron cannot say 'Mon..Fri 06:00')" in r.stdout
    )


def test_names_that_become_one_are_refused(project: Project) -> None:
    project.write(
        "web1.toml",
        '[host]\nname = "web1"\naddress = "a"\n\n'
        '[containers.web_app]\nimage = "docker.io/library/nginx"\nversion = "1.27.3"\n\n'
        '[containers.web-app]\nimage = "docker.io/library/nginx"\nversion = "1.27.3"\n',
    )
    r = project.run("export", "web1", "--kube")
    assert r.returncode == 2
    # one line for the pair, though their Deployments and containers both collide
    assert r.stderr.splitlines()[:-1] == [
        "error: stacks/web1.toml: containers.web_app and containers.web-app both become the "
        "Deployment 'web-app' in Kubernetes (names are lower-case, '_' becomes '-'): "
        "rename one of them"
    ]
    assert "Traceback" not in r.stderr
    assert not (project.root / "export").exists()


def test_bad_options_and_foreign_folders(project: Project) -> None:
    r = project.run("export", "vps1")
    assert r.returncode == 2 and "--kube" in r.stderr
    r = project.run("export", "vps1", "--kube", "--ingress-class", "Not_A_Class")
    assert (
        r.returncode == 2 and "--ingress-class 'Not_A_Class' is not a Kubernetes name" in r.stderr
    )
    mine = project.root / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    r = project.run("export", "vps1", "--kube", "--out", str(mine))
    assert r.returncode == 2
    assert "exists and was not written by bundle export" in r.stderr
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    r = project.run("export", "nosuchhost", "--kube")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    shutil.rmtree(mine)


def test_a_volume_and_a_config_file_that_become_one_volume_are_refused(project: Project) -> None:
    project.write("templates/web/data", "x\n")
    project.write(
        "web1.toml",
        '[host]\nname = "web1"\naddress = "a"\n\n[volumes.web-data]\n\n'
        '[containers.web]\nimage = "docker.io/library/nginx"\nversion = "1.27.3"\n'
        'volumes = ["web-data:/data"]\n'
        'configs = [{ source = "web/data", path = "data", mount = "/etc/data" }]\n',
    )
    r = project.run("export", "web1", "--kube")
    assert r.returncode == 2, r.stdout
    assert "both become the volume of web 'web-data'" in r.stderr
    assert not (project.root / "export").exists()


def test_health_commands_in_each_of_podmans_forms() -> None:
    from builder.render.kube.workload import health_command

    assert health_command("curl -f http://x/") == ["/bin/sh", "-c", "curl -f http://x/"]
    assert health_command('["CMD", "curl", "-f", "http://x/"]') == ["curl", "-f", "http://x/"]
    assert health_command('["CMD-SHELL", "curl -f http://x/ || exit 1"]') == [
        "/bin/sh",
        "-c",
        "curl -f http://x/ || exit 1",
    ]
    assert health_command("[ -f /ready ]") == ["/bin/sh", "-c", "[ -f /ready ]"]


def test_a_config_file_too_big_for_a_configmap_is_refused(project: Project) -> None:
    project.write("templates/web/big.bin", "x" * (1024 * 1024 + 1))
    project.write(
        "web1.toml",
        '[host]\nname = "web1"\naddress = "a"\n\n'
        '[containers.web]\nimage = "docker.io/library/nginx"\nversion = "1.27.3"\n'
        'configs = [{ source = "web/big.bin", mount = "/srv/big.bin" }]\n',
    )
    r = project.run("export", "web1", "--kube")
    assert r.returncode == 2, r.stdout
    assert (
        "containers.web.configs[0]: big.bin is 1048577 bytes; a ConfigMap or Secret holds at most 1 MiB"
        in r.stderr
    )
    assert not (project.root / "export").exists()


def test_a_route_to_a_name_dns_cannot_hold_is_listed(project: Project) -> None:
    project.edit("vps1.toml", 'subdomain = "notes"', 'subdomain = "Notes Here"')
    r = export(project, "vps1")
    assert (
        "    vars.routes.hedgedoc: 'Notes Here.example.org' is not a DNS name; instead: write its Ingress by hand"
        in r.stdout
    )
    assert not (project.root / "export/vps1/ingress-hedgedoc.yaml").exists()
    assert (project.root / "export/vps1/ingress-nextcloud.yaml").exists()


@pytest.mark.parametrize("host", ["vps1", "vps2"])
def test_configmaps_hold_the_builds_rendered_files_byte_for_byte(
    project: Project, host: str
) -> None:
    from builder.render.kube.names import key, label

    build = project.run("build", host)
    assert build.returncode == 0, build.stderr
    generation = next(p for p in (project.bundles / host).iterdir() if p.is_dir())
    export(project, host)
    found = objects(project.root / "export" / host)
    compared = 0
    for path in sorted((generation / "files").rglob("*")):
        if not path.is_file():
            continue
        service, rel = path.relative_to(generation / "files").as_posix().split("/", 1)
        cm = found.get(f"configmap-{label(service, rel)}.yaml")
        if cm is not None:
            assert cm["data"][key(rel)].encode() == path.read_bytes(), rel
            compared += 1
    assert compared == sum(1 for f in found if f.startswith("configmap-"))
    assert compared >= 2


PORTS_STACK = """\
[host]
name = "web1"
address = "a"

[containers.web]
image = "docker.io/library/nginx"
version = "1.27.3"
ports = ["127.0.0.1:8080:80", "10.8.0.1:8080:{second}", "0.0.0.0:53:53/udp"]
"""


def test_a_port_published_on_two_addresses_is_one_service(project: Project) -> None:
    project.write("web1.toml", PORTS_STACK.format(second=80))
    r = export(project, "web1")
    found = objects(project.root / "export" / "web1")
    services = sorted(f for f in found if f.startswith("service-"))
    assert services == ["service-web-53-udp.yaml", "service-web-8080.yaml"]
    assert found["service-web-8080.yaml"]["spec"]["type"] == "ClusterIP"
    assert found["service-web-53-udp.yaml"]["spec"]["type"] == "LoadBalancer"
    assert "    containers.web.ports[1]: 10.8.0.1:8080:80 listens on 10.8.0.1 only" in r.stdout
    # the same host port to two container ports cannot be one Service
    project.write("web1.toml", PORTS_STACK.format(second=81))
    r = project.run("export", "web1", "--kube")
    assert r.returncode == 2
    assert (
        "containers.web.ports[1] and containers.web.ports[0] both become the Service 'web-8080'"
        in r.stderr
    )


def test_no_object_replaces_another_whatever_made_them() -> None:
    from builder.render.kube.export import _written_twice

    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web-80"}}
    assert _written_twice([service, {**service, "kind": "ConfigMap"}]) == []
    assert _written_twice([service, service]) == [
        "the stack makes two Service objects named 'web-80': rename one"
    ]


def test_the_export_runs_the_images_the_lock_names(project: Project) -> None:
    import json

    project.write(
        "web1.toml",
        '[host]\nname = "web1"\naddress = "web1.example.org"\n\n[containers.worker]\n'
        'image = "registry.test:5000/bundle/web"\nversion = "1.0.0"\n',
    )
    locked = "b" * 64
    lock = {
        "format": 1,
        "host": "web1",
        "images": {
            "worker": {
                "digest": f"sha256:{locked}",
                "image": "registry.test:5000/bundle/web",
                "tag": "1.0.0",
            }
        },
    }
    (project.root / "stacks/lock").mkdir(exist_ok=True)
    (project.root / "stacks/lock/web1.json").write_text(json.dumps(lock))
    export(project, "web1")
    found = objects(project.root / "export" / "web1")
    images = {
        c["name"]: c["image"]
        for obj in found.values()
        if obj["kind"] == "Deployment"
        for c in obj["spec"]["template"]["spec"]["containers"]
    }
    assert images["worker"] == f"registry.test:5000/bundle/web:1.0.0@sha256:{locked}"
