"""The build pipeline: load → structure → validate → render → manifest → store."""

from __future__ import annotations

import json
from typing import Any

import attrs

from builder.base.errors import StackError
from builder.bundle import lockfile, manifest
from builder.bundle.paths import Paths
from builder.bundle.store import Generation, Store
from builder.bundle.uptodate import FINGERPRINT_FILE, current, input_fingerprint, switcher_dir
from builder.render.output import BundleFile


@attrs.frozen
class BuildResult:
    generation: Generation
    created: bool
    bundle_hash: str
    written: dict[str, Any] | None = None  # the manifest this build wrote, as JSON

    def manifest(self) -> dict[str, Any]:
        """The generation's manifest as JSON: the one just written, else read back from disk."""
        return self.written if self.written is not None else self.generation.manifest()


def switcher_files() -> dict[str, tuple[bytes, int]]:
    root = switcher_dir()
    return {
        f"activate/{p.relative_to(root).as_posix()}": (p.read_bytes(), 0o644)
        for p in sorted(root.rglob("*.py"))
        if "__pycache__" not in p.parts
    }


def load_stack(paths: Paths, host: str, index: Any = None) -> Any:
    """Load, structure and validate a host's stack; raise StackError with every problem.

    A host that names other hosts (WireGuard peers) has them loaded too, through `index` (a
    builder.render.hosts.StackIndex): their own problems are reported with their own file:line.
    """
    # start-up: loading and rendering (jinja2, cattrs) cost ~0.2 s that an up-to-date build skips
    from builder.render.features import wireguard
    from builder.render.hosts import StackIndex
    from builder.render.validate import validate
    from builder.stack.load import load_stack as load_raw
    from builder.stack.structure import structure

    raw = load_raw(paths.stacks_dir, host)
    stack = structure(raw)
    problems = validate(stack, raw, paths.templates_dir)
    if problems:
        raise StackError(problems)
    index = index if index is not None else StackIndex(paths.stacks_dir, paths.templates_dir)
    index.add(stack, raw)
    wireguard.resolve_peers(stack, raw, index)
    return stack


def render(paths: Paths, host: str) -> tuple[Any, Any]:
    # start-up: as in load_stack, rendering is imported only when a build renders
    from builder.render import podman_keys
    from builder.render.features import wireguard
    from builder.render.features.secrets import SecretBinding
    from builder.render.hosts import Hosts, StackIndex
    from builder.render.renderer import render_stack
    from builder.render.templates import TemplateRenderer

    index = StackIndex(paths.stacks_dir, paths.templates_dir)
    stack = load_stack(paths, host, index)
    raw = index.load(host)[1]
    lock = lockfile.read_lock(paths.stacks_dir, host)
    stack = lockfile.apply_lock(stack, lock, stack.host.lock)
    secrets = SecretBinding(paths.stacks_dir, host, stack.host.state_dir)
    rendered = render_stack(
        stack,
        TemplateRenderer(paths.templates_dir),
        extra_context={"hosts": Hosts(index, stack)},
        secrets=secrets,
        peers=wireguard.resolve_peers(stack, raw, index),
    )
    problems = [*rendered.problems, *secrets.problems(lambda: raw)]
    problems += podman_keys.stack_problems(stack.host, rendered, raw)
    tunnel = stack.tunnel()
    if tunnel is not None and secrets.secrets() is not None:
        # a build needs no identity: an age file nobody here opens goes unchecked
        value = secrets.secrets().value_without_prompt(tunnel.private_key)  # type: ignore[union-attr]
        problems += wireguard.key_problems(stack, raw, value)
    if problems:
        raise StackError(problems)
    return stack, rendered


def check(paths: Paths, host: str) -> Any:
    return render(paths, host)


def build(paths: Paths, host: str, fingerprint: str | None = None) -> BuildResult:
    store = Store(paths.bundles_dir, host)
    if fingerprint is None:
        fingerprint = input_fingerprint(paths.stacks_dir, host)
    marker = store.dir / FINGERPRINT_FILE
    unchanged = current(paths.stacks_dir, paths.bundles_dir, host, fingerprint)
    if unchanged is not None:
        built = unchanged.generation
        return BuildResult(
            Generation(host, built.number, built.short, built.path), False, unchanged.bundle_hash
        )
    # start-up: zstandard and tarfile only when a build writes an archive, not when up to date
    from builder.bundle import archive

    stack, rendered = render(paths, host)
    switcher = {p: BundleFile(d, m) for p, (d, m) in switcher_files().items()}
    h = stack.host
    deploy = {
        "health_timeout": h.health_timeout,
        "health_settle": h.health_settle,
        "confirm_timeout": h.confirm_timeout,
    }
    rootless_user = h.ssh_user if h.rootless else None
    body = manifest.build_manifest(host, h.state_dir, rendered, switcher, deploy, rootless_user)
    digest = body.hash
    written = None
    with store.locked():
        latest = store.latest()
        if latest is not None and manifest.bundle_hash(latest.manifest()) == digest:
            gen, created = latest, False
        else:
            number = latest.number + 1 if latest else 1
            stamped = body.stamped(number, latest.number if latest else None)
            files = {p: (f.data, f.mode) for p, f in {**rendered.files, **switcher}.items()}
            files[manifest.MANIFEST_NAME] = (manifest.dump(stamped), 0o644)
            # this build's own bytes: read back without the strict checks for outside JSON
            written = json.loads(files[manifest.MANIFEST_NAME][0])
            top = f"{number}-{digest[:12]}"
            gen = store.add(
                number, digest[:12], files, lambda dest: archive.write_archive(dest, files, top)
            )
            created = True
        marker.write_text(f"{fingerprint} {gen.name} {digest}\n")
    return BuildResult(gen, created, digest, written)
