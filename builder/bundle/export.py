"""`bundle export`: a host's stack as Kubernetes manifests in a folder of their own.

The stack is loaded, checked and its templates rendered as for a build (the same config files
land in the ConfigMaps), then the Kubernetes renderer writes the objects. Secret values are
never read: `secret("NAME")` leaves its marker, as in a bundle.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import jinja2

from builder.base.errors import InputError, Problem, StackError
from builder.bundle import lockfile
from builder.bundle.build import load_stack
from builder.bundle.paths import Paths
from builder.render.features import wireguard
from builder.render.hosts import Hosts, StackIndex
from builder.render.kube.export import HEADER, KubeExport, render_kube
from builder.render.renderer import render_stack
from builder.render.templates import TemplateRenderer
from builder.secrets.files import marker
from builder.stack.names import NAME, NAME_HINT


def default_out(root: Path, host: str) -> Path:
    return root / "export" / host


def export_kube(paths: Paths, host: str, ingress_class: str) -> KubeExport:
    """The export of `host`; raise StackError with every problem of the stack or of the export."""
    index = StackIndex(paths.stacks_dir, paths.templates_dir)
    stack = load_stack(paths, host, index)
    raw = index.load(host)[1]
    # the images a build would run: the lock's digests, refused as a build refuses them
    stack = lockfile.apply_lock(stack, lockfile.read_lock(paths.stacks_dir, host), stack.host.lock)
    rendered = render_stack(
        stack,
        TemplateRenderer(paths.templates_dir),
        extra_context={"hosts": Hosts(index, stack), "secret": _marker_only()},
        peers=wireguard.resolve_peers(stack, raw, index),
    )
    if rendered.problems:
        raise StackError(list(rendered.problems))
    result = render_kube(stack, rendered, ingress_class)
    if result.problems:
        shown = f"{paths.stacks_dir.name}/{host}.toml"
        raise StackError([Problem(p, shown) for p in result.problems])
    return result


def _marker_only() -> Callable[[str], str]:
    def secret(name: object) -> str:
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise jinja2.TemplateRuntimeError(f"secret({name!r}): invalid name: {NAME_HINT}")
        return marker(name)

    return secret


def write_folder(out: Path, files: dict[str, bytes]) -> None:
    """Replace `out` with exactly `files`: a folder an earlier export wrote, or a new one.

    Written beside it first, then swapped in, so a failed export leaves the old one whole.
    """
    if out.exists() and not _ours(out):
        raise InputError(
            f"{out}: exists and was not written by bundle export; "
            "remove it or choose another folder with --out"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.export-tmp")
    old = out.with_name(f".{out.name}.export-old")
    for leftover in (tmp, old):
        shutil.rmtree(leftover, ignore_errors=True)
    tmp.mkdir()
    for rel, data in files.items():
        path = tmp / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def _ours(out: Path) -> bool:
    if out.is_dir() and not any(out.iterdir()):
        return True
    k = out / "kustomization.yaml"
    return k.is_file() and k.read_bytes().startswith(HEADER)
