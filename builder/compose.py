"""`bundle import compose.yml --host NAME`: a docker-compose file becomes a stack file.

What translates: image (tag → version), ports, named volumes and absolute bind mounts,
environment, depends_on, command, entrypoint, user, labels, networks, restart, healthcheck.
Everything else is listed in the report, one line per key, so nothing is dropped silently.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import attrs

from builder.errors import InputError

KNOWN = {
    "image", "ports", "volumes", "environment", "depends_on", "command", "entrypoint",
    "user", "labels", "networks", "restart", "healthcheck", "container_name",
}  # fmt: skip
RESTART = {"always": "always", "unless-stopped": "always", "on-failure": "on-failure", "no": "no"}
NAME = re.compile(r"[^a-z0-9_-]+")


@attrs.frozen
class Imported:
    toml: str
    untranslated: tuple[str, ...]


def toml_string(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # a JSON string is a TOML basic string


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
    return toml_string(str(value))


def toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else toml_string(key)


def unit_name(name: str) -> str:
    return NAME.sub("-", name.lower()).strip("-_")[:63] or "service"


def split_image(ref: str) -> tuple[str, str | None, str | None]:
    """docker.io/x/y:1.2@sha256:… → (image, version, digest)."""
    digest = None
    if "@" in ref:
        ref, digest = ref.split("@", 1)
    repo, _, tag = ref.rpartition(":")
    if not repo or "/" in tag:
        return ref, None, digest
    return repo, tag, digest


def _env(value: Any) -> dict[str, str]:
    if isinstance(value, dict):
        return {str(k): "" if v is None else str(v) for k, v in value.items()}
    out = {}
    for item in value or []:
        key, _, val = str(item).partition("=")
        out[key] = val
    return out


def _words(value: Any) -> list[str]:
    return shlex.split(value) if isinstance(value, str) else [str(v) for v in value]


def _port(value: Any) -> str | None:
    if isinstance(value, int | str):
        return str(value)
    if isinstance(value, dict) and "target" in value:
        host = f"{value['host_ip']}:" if value.get("host_ip") else ""
        published = f"{value['published']}:" if value.get("published") else ""
        proto = f"/{value['protocol']}" if value.get("protocol") in ("udp",) else ""
        return f"{host}{published}{value['target']}{proto}"
    return None


def convert(compose_text: str, host: str, source: str) -> Imported:
    import yaml  # only `bundle import` needs YAML

    try:
        doc = yaml.safe_load(compose_text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        raise InputError(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("services"), dict):
        raise InputError(f"{source}: no `services:` table; is this a compose file?")
    notes: list[str] = []
    volumes: set[str] = set()
    networks: set[str] = set()
    containers: dict[str, dict[str, Any]] = {}
    names = {svc: unit_name(svc) for svc in doc["services"]}
    for key in sorted(set(doc) - {"services", "volumes", "networks", "version", "name"}):
        notes.append(f"{key}: not translated (top-level {key} has no stack equivalent)")
    for svc, spec in doc["services"].items():
        name = names[svc]
        spec = spec or {}
        c: dict[str, Any] = {}
        where = f"services.{svc}"
        if "image" not in spec:
            notes.append(
                f"{where}: no image (build: is not translated); set image and version by hand"
            )
        else:
            image, version, digest = split_image(str(spec["image"]))
            c["image"] = (
                image
                if "/" in image or "." in image.split("/")[0]
                else f"docker.io/library/{image}"
            )
            if image.count("/") == 1 and "." not in image.split("/")[0]:
                c["image"] = f"docker.io/{image}"
            if version and version != "latest":
                c["version"] = version
            if digest:
                c["digest"] = digest
            if not version or version == "latest":
                notes.append(
                    f"{where}.image: {spec['image']!r} is not pinned; set version to a real tag"
                )
        if "command" in spec:
            c["command"] = _words(spec["command"])
        if "entrypoint" in spec:
            words = _words(spec["entrypoint"])
            c["entrypoint"] = words[0] if words else ""
            if len(words) > 1:
                c.setdefault("command", [])
                c["command"] = words[1:] + c["command"]
        if "user" in spec:
            c["user"] = str(spec["user"])
        env = _env(spec.get("environment"))
        if env:
            c["environment"] = env
        ports = []
        for p in spec.get("ports", []) or []:
            text = _port(p)
            if text is None:
                notes.append(f"{where}.ports: {p!r} not translated")
            else:
                ports.append(text)
        if ports:
            c["ports"] = ports
        vols = []
        for v in spec.get("volumes", []) or []:
            if isinstance(v, dict):
                v = f"{v.get('source', '')}:{v.get('target', '')}" + (
                    ":ro" if v.get("read_only") else ""
                )
            source, _, rest = str(v).partition(":")
            if not rest:
                notes.append(f"{where}.volumes: anonymous volume {v!r} not translated; name it")
            elif source.startswith((".", "~")):
                notes.append(
                    f"{where}.volumes: relative bind mount {v!r} not translated; use an absolute path or a named volume"
                )
            else:
                if not source.startswith("/"):
                    source = unit_name(source)
                    volumes.add(source)
                vols.append(f"{source}:{rest}")
        if vols:
            c["volumes"] = vols
        deps = spec.get("depends_on") or []
        deps = list(deps) if isinstance(deps, dict | list) else []
        if deps:
            c["depends_on"] = [names.get(d, unit_name(d)) for d in deps]
        nets = spec.get("networks") or []
        nets = [
            unit_name(n) for n in (nets if isinstance(nets, list) else list(nets)) if n != "default"
        ]
        if spec.get("network_mode") in ("host", "none"):
            nets = [spec["network_mode"]]
        networks.update(n for n in nets if n not in ("host", "none"))
        if nets:
            c["networks"] = nets
        labels = _env(spec.get("labels"))
        if labels:
            c["labels"] = labels
        if "restart" in spec:
            c["restart"] = RESTART.get(str(spec["restart"]), "always")
        hc = spec.get("healthcheck")
        if isinstance(hc, dict) and hc.get("test") and not hc.get("disable"):
            test = hc["test"]
            if isinstance(test, list):
                cmd = (
                    test[1]
                    if test[:1] == ["CMD-SHELL"] and len(test) > 1
                    else shlex.join(test[1:] if test[:1] == ["CMD"] else test)
                )
            else:
                cmd = str(test)
            c["health"] = {"cmd": cmd, **({"interval": hc["interval"]} if "interval" in hc else {})}
        for key in sorted(set(spec) - KNOWN - {"network_mode"}):
            notes.append(f"{where}.{key}: not translated")
        containers[name] = c
    lines = [
        f"# Imported from {source} by `bundle import`; `bundle check {host}` says what is left to do.",
        "",
        "[host]",
        f"name = {toml_string(host)}",
        f"address = {toml_string(host + '.example.org')}",
        "",
    ]
    for vol in sorted(volumes):
        lines += [f"[volumes.{vol}]", ""]
    for net in sorted(networks):
        lines += [f"[networks.{net}]", ""]
    for name, c in containers.items():
        lines.append(f"[containers.{name}]")
        lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in c.items()]
        lines.append("")
    return Imported("\n".join(lines), tuple(notes))


def import_compose(
    compose: Path, host: str, stacks_dir: Path, force: bool
) -> tuple[Path, Imported]:
    from builder.load import stack_path

    dest = stack_path(stacks_dir, host)
    if dest.exists() and not force:
        raise InputError(f"{dest} already exists; pass --force to replace it")
    try:
        text = compose.read_text()
    except OSError as exc:
        raise InputError(f"{compose}: cannot read: {exc.strerror}") from exc
    result = convert(text, host, str(compose))
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(result.toml)
    return dest, result
