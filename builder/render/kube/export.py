"""Stack → Kubernetes manifests, a kustomization.yaml and a README of what did not translate.

Deterministic: one object per file, named KIND-NAME.yaml, keys sorted; the same stack gives
the same bytes. Secret values are never read: a Secret is a name the README tells how to make.
"""

from __future__ import annotations

import re
from typing import Any

import attrs
import yaml

from builder.render.kube import host, network
from builder.render.kube.names import Note, collisions, label
from builder.render.kube.readme import readme
from builder.render.kube.sink import Obj, Sink
from builder.render.kube.workload import workload
from builder.render.output import Rendered
from builder.stack.model import Container, Stack

_CLASS = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
HEADER = b"# written by `bundle export --kube`: change the stack and export again\n"


@attrs.frozen
class KubeExport:
    files: dict[str, bytes]  # path in the output folder -> bytes, sorted
    kinds: dict[str, int]  # objects written, by kind
    notes: tuple[Note, ...]
    secrets: tuple[str, ...]  # the Secrets to create before applying, config files' too
    namespace: str
    problems: tuple[str, ...]


def render_kube(stack: Stack, rendered: Rendered, ingress_class: str = "traefik") -> KubeExport:
    ns = label(stack.host.name)
    sink = Sink(stack.host.name, ns)
    problems = []
    if not _CLASS.fullmatch(ingress_class):
        problems.append(
            f"--ingress-class {ingress_class!r} is not a Kubernetes name: "
            "lower-case letters, digits, '-' and '.'"
        )
    sink.objects.append({"apiVersion": "v1", "kind": "Namespace", "metadata": sink.meta(ns)})
    on_host = {n: c for n, c in stack.enabled_containers().items() if "host" in c.networks}
    containers = {n: c for n, c in stack.enabled_containers().items() if n not in on_host}
    ports: dict[int, str] = {}
    used: dict[str, set[str]] = {}
    groups: list[tuple[str, Any, list[tuple[str, Container]], tuple[str, ...]]] = []
    for name, pod in sorted(stack.enabled_pods().items()):
        members = sorted((n, c) for n, c in containers.items() if c.pod == name)
        if members:
            groups.append((name, pod, members, pod.ports))
    for name, c in sorted(containers.items()):
        if c.pod is None:
            groups.append((name, None, [(name, c)], c.ports))
    for name, pod, members, published in groups:
        workload(sink, stack, name, pod, members, rendered.files, rendered.images)
        where = f"pods.{name}" if pod is not None else f"containers.{name}"
        ports.update(network.services(sink, name, where, published))
        for _, c in members:
            for vol in c.volumes:
                source = vol.split(":")[0]
                if source in stack.volumes:
                    used.setdefault(source, set()).add(label(name))
    network.claims(sink, stack, used)
    network.ingresses(sink, stack, ports, ingress_class)
    host.scripts(sink, stack, rendered.files)
    host.host_notes(sink, stack, on_host)
    problems += sink.problems + collisions(sink.origins)
    if not problems:  # a backstop: no object may replace another, whatever made them
        problems += _written_twice(sink.objects)
    return _files(sink, tuple(problems))


def _written_twice(objects: list[Obj]) -> list[str]:
    seen: set[tuple[str, str]] = set()
    twice = []
    for obj in objects:
        at = (obj["kind"], obj["metadata"]["name"])
        if at in seen:
            twice.append(f"the stack makes two {at[0]} objects named {at[1]!r}: rename one")
        seen.add(at)
    return twice


def _files(sink: Sink, problems: tuple[str, ...]) -> KubeExport:
    files: dict[str, bytes] = {}
    kinds: dict[str, int] = {}
    for obj in sink.objects:
        kind, name = obj["kind"], obj["metadata"]["name"]
        files[f"{kind.lower()}-{name}.yaml"] = HEADER + dump(obj)
        kinds[kind] = kinds.get(kind, 0) + 1
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": sorted(files),
    }
    secret_files = {
        f"secret-files/{name}/{k}": data for name, (k, data, _) in sink.secret_files.items()
    }
    files["kustomization.yaml"] = HEADER + dump(kustomization)
    notes = tuple(sorted(set(sink.notes), key=lambda n: (n.where, n.what)))
    secrets = tuple(sorted(sink.secrets))
    files["README.md"] = readme(sink, notes, secrets, dict(sorted(kinds.items()))).encode()
    secrets = tuple(sorted({*sink.secrets, *sink.secret_files}))
    files.update(secret_files)
    return KubeExport(
        dict(sorted(files.items())),
        dict(sorted(kinds.items())),
        notes,
        secrets,
        sink.namespace,
        problems,
    )


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, text: str) -> yaml.Node:
    # a config file reads as itself: a literal block, when YAML can hold it as one
    style = "|" if "\n" in text and not re.search(r"[ \t]\n|[^\S\n]$|\r", text) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _str)


def dump(obj: Obj) -> bytes:
    text = yaml.dump(
        obj, Dumper=_Dumper, sort_keys=True, default_flow_style=False, allow_unicode=True, width=120
    )
    return text.encode()
