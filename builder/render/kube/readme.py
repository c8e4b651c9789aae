"""The README of an export: how to apply it, the Secrets to create, what did not translate."""

from __future__ import annotations

from builder.render.kube.names import Note
from builder.render.kube.network import VOLUME_SIZE
from builder.render.kube.sink import Sink
from builder.render.kube.workload import SECRET_KEY


def readme(
    sink: Sink, notes: tuple[Note, ...], secrets: tuple[str, ...], kinds: dict[str, int]
) -> str:
    ns = sink.namespace
    out = [
        f"# {sink.host} as Kubernetes manifests",
        "",
        f"Written by `bundle export {sink.host} --kube` from the stack of {sink.host}: change "
        "the stack and export again rather than editing these files. Everything is in the "
        f"namespace `{ns}`. See docs/kubernetes.md of the project for what maps to what.",
        "",
        "Objects: " + ", ".join(f"{n} {k}" for k, n in kinds.items()) + ".",
        "",
        "## Apply",
        "",
        "1. Create the Secrets below (values never leave your secrets files).",
        f"2. Check the claims' sizes: every PersistentVolumeClaim asks for {VOLUME_SIZE}.",
        "3. `kubectl apply -k .` in this folder (or `kubectl kustomize .` to see it whole).",
        "",
        "## Secrets to create",
        "",
    ]
    if not secrets and not sink.secret_files:
        out += ["None.", ""]
    if secrets:
        out += [
            f"Each holds one key, `{SECRET_KEY}`: the value of the stack's secret of the name "
            f"shown (`bundle secrets edit {sink.host}` shows them). With kubectl, or as "
            "SealedSecrets, or encrypted with sops:",
            "",
            "```sh",
            f"kubectl create namespace {ns}",
        ]
        for name in secrets:
            stack_name = sink.secrets[name]
            out.append(
                f"printf %s 'VALUE OF {stack_name}' | kubectl -n {ns} create secret generic "
                f"{name} --from-file={SECRET_KEY}=/dev/stdin"
            )
        out += ["```", ""]
    if sink.secret_files:
        out += [
            "Config files that embed a secret are Secrets too. Their text is in secret-files/: "
            "replace each `@@bundle-secret:NAME@@` with the value of NAME, then:",
            "",
            "```sh",
        ]
        for name, (key, _, _) in sorted(sink.secret_files.items()):
            out.append(
                f"kubectl -n {ns} create secret generic {name} "
                f"--from-file={key}=secret-files/{name}/{key}"
            )
        out += ["```", "", "Delete the filled-in copies afterwards.", ""]
    out += ["## Not translated", ""]
    if not notes:
        out += ["Nothing: every part of the stack has its Kubernetes object here.", ""]
    else:
        out += [
            "What the stack does that these objects do not, and the Kubernetes way to do it:",
            "",
            "| where in the stack | what | instead |",
            "|---|---|---|",
        ]
        out += [f"| `{n.where}` | {_cell(n.what)} | {_cell(n.instead)} |" for n in notes]
        out.append("")
    out += [
        "## Also",
        "",
        "- Ingresses name a TLS Secret (`ROUTE-tls`): cert-manager makes it with the annotation "
        "`cert-manager.io/cluster-issuer` on the Ingress; without one, the ingress controller "
        "serves its default certificate.",
        "- The stack sets no CPU or memory limits, so none are written: add them with a "
        "kustomize patch.",
        "- Pods reach each other through Services by name (`NAME-PORT`); an address like "
        "127.0.0.1:PORT of another pod in a config or environment must become that name.",
        "",
    ]
    return "\n".join(out)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")
