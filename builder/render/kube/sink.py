"""What an export collects while it runs: objects, secret names, secret files, notes."""

from __future__ import annotations

from typing import Any

from builder.render.kube.names import Note

Obj = dict[str, Any]

MANAGED = {"app.kubernetes.io/managed-by": "bundle"}


class Sink:
    def __init__(self, host: str, namespace: str) -> None:
        self.host = host
        self.namespace = namespace
        self.objects: list[Obj] = []
        self.origins: list[tuple[str, str, str]] = []  # (kind, name, stack key) for collisions
        self.notes: list[Note] = []
        self.problems: list[str] = []  # what Kubernetes would refuse: the export fails
        self.secrets: dict[str, str] = {}  # k8s Secret name -> stack secret name
        # k8s Secret name -> (its key, the file with @@bundle-secret markers, the stack key)
        self.secret_files: dict[str, tuple[str, bytes, str]] = {}

    def note(self, where: str, what: str, instead: str) -> None:
        self.notes.append(Note(where, what, instead))

    def meta(self, name: str, labels: dict[str, str] | None = None) -> Obj:
        return {
            "name": name,
            "namespace": self.namespace,
            "labels": {**MANAGED, "app.kubernetes.io/part-of": self.namespace, **(labels or {})},
        }

    def add(self, api: str, kind: str, name: str, origin: str, body: Obj, **meta: Any) -> Obj:
        obj = {"apiVersion": api, "kind": kind, "metadata": {**self.meta(name), **meta}, **body}
        self.objects.append(obj)
        self.origins.append((kind, name, origin))
        return obj
