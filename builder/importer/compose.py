"""`bundle import compose.yml --host NAME`: a docker-compose file becomes a stack file.

The file is read as docker compose reads it: variables are interpolated from the environment
and the `.env` file next to it, `extends` is resolved, and every service joins the project's
default network (a podman network with DNS, so services reach each other by name). Literal
credentials go to `bundle secrets`, never into the stack. What has no faithful translation is
a note, with its key path and what to do; nothing is dropped silently.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from builder.base.errors import InputError
from builder.base.words import plural
from builder.importer.draft import Draft, unit_name
from builder.importer.interpolate import Unset, interpolate_tree, parse_env_file
from builder.importer.report import Note
from builder.importer.service import mapping, translate
from builder.importer.yaml_reader import read_yaml
from builder.secrets.files import SecretsError, open_file
from builder.stack.load import stack_path

TOP_LEVEL = {"services", "volumes", "networks", "secrets", "configs", "version", "name"}


@attrs.frozen
class Imported:
    toml: str
    notes: tuple[Note, ...]
    secrets: dict[str, str] = attrs.field(factory=dict, repr=False)  # name -> value

    @property
    def untranslated(self) -> tuple[str, ...]:
        return tuple(str(n) for n in self.notes)


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


def variables(base_dir: Path, environ: Mapping[str, str]) -> tuple[dict[str, str], list[Unset]]:
    """The environment over the `.env` file next to the compose file, as docker compose has it."""
    path = base_dir / ".env"
    if not path.is_file():
        return dict(environ), []
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read: {exc}") from None
    values, unset = parse_env_file(text, environ, str(path))
    return {**values, **environ}, list(unset)


# --- extends ---------------------------------------------------------------------------------

_APPEND = {"ports", "expose", "dns", "cap_add", "cap_drop", "devices", "volumes", "secrets",
           "env_file", "profiles", "external_links", "extra_hosts"}  # fmt: skip


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        old = out.get(key)
        if key in ("environment", "labels") and old is not None:
            out[key] = {**mapping(old), **mapping(value)}
        elif isinstance(old, dict) and isinstance(value, dict):
            out[key] = merge(old, value)
        elif key in _APPEND and isinstance(old, list) and isinstance(value, list):
            out[key] = old + [v for v in value if v not in old]
        else:
            out[key] = value
    return out


def resolve_extends(
    services: dict[str, Any], load: Any, where: str, chain: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Each service with `extends` merged over the one it extends (in this or another file)."""
    out: dict[str, Any] = {}
    for svc, spec in services.items():
        out[svc] = _extended(svc, spec or {}, services, load, where, chain)
    return out


def _extended(
    svc: str, spec: dict[str, Any], services: dict[str, Any], load: Any, where: str,
    chain: tuple[str, ...],
) -> dict[str, Any]:  # fmt: skip
    ext = spec.get("extends")
    if ext is None:
        return spec
    here = f"{where}:services.{svc}.extends"
    base_name = ext if isinstance(ext, str) else str(ext.get("service", ""))
    key = f"{ext.get('file', where) if isinstance(ext, dict) else where}#{base_name}"
    if key in chain:
        raise InputError(f"{here}: extends itself ({' -> '.join((*chain, key))}); break the loop")
    pool, pool_where = services, where
    if isinstance(ext, dict) and ext.get("file"):
        pool, pool_where = load(str(ext["file"]), here)
    base = pool.get(base_name)
    if not isinstance(base, dict):
        raise InputError(f"{here}: there is no service {base_name!r} in {pool_where} to extend")
    base = _extended(base_name, base, pool, load, pool_where, (*chain, key))
    rest = {k: v for k, v in spec.items() if k != "extends"}
    return merge({k: v for k, v in base.items() if k not in ("depends_on",)}, rest)


# --- the whole file --------------------------------------------------------------------------


def convert(
    compose_text: str,
    host: str,
    source: str,
    base_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Imported:
    base_dir = base_dir if base_dir is not None else Path(source).resolve().parent
    env, unset = variables(base_dir, os.environ if environ is None else environ)
    doc = read_yaml(compose_text, source)
    if not isinstance(doc, dict) or not isinstance(doc.get("services"), dict):
        raise InputError(f"{source}: no `services:` table; is this a compose file?")
    doc = interpolate_tree(doc, env, "", unset)

    def load(rel: str, where: str) -> tuple[dict[str, Any], str]:
        path = base_dir / rel
        try:
            other = read_yaml(path.read_text(), str(path))
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"{where}: cannot read {path}: {exc}") from None
        other = interpolate_tree(other, env, "", unset)
        if not isinstance(other, dict) or not isinstance(other.get("services"), dict):
            raise InputError(f"{where}: {path} has no `services:` table")
        return other["services"], str(path)

    services = resolve_extends(doc["services"], load, source)
    # docker compose's order: COMPOSE_PROJECT_NAME (environment or .env), `name:`, the folder
    project = unit_name(env.get("COMPOSE_PROJECT_NAME") or str(doc.get("name") or base_dir.name))
    d = Draft(
        host=host,
        base_dir=base_dir,
        variables=env,
        names=_container_names(services),
        networks={},
        default_network=f"{project}_default"[:63],
        top_volumes={},
        top_secrets=doc.get("secrets") or {},
        unset=unset,
    )
    for key in sorted(set(doc) - TOP_LEVEL):
        if not str(key).startswith("x-"):
            d.note(str(key), f"top-level {key} is not translated", "the stack has no equivalent")
    volume_tables = _top_volumes(doc.get("volumes") or {}, d)
    network_tables = _top_networks(doc.get("networks") or {}, d)
    containers = {d.names[svc]: translate(svc, spec or {}, d) for svc, spec in services.items()}
    _healthy_waits(services, containers, d)
    for name, places in _unset_by_name(d.unset).items():
        d.note(places[0], f"variable {name} is not set; an empty string was used"
               + (f" (also in {', '.join(places[1:])})" if places[1:] else ""),
               "set it in the environment or in the .env file next to the compose file, "
               "and import again")  # fmt: skip
    for key in sorted(set(doc.get("configs") or {})):
        d.note(f"configs.{key}", "not translated",
               "put the file in stacks/templates/ and add configs = [{ source = ..., mount = ... }]")  # fmt: skip
    networks = {n: t for n, t in network_tables.items() if n in d.used_networks}
    if d.default_network in d.used_networks:
        networks.setdefault(d.default_network, {})
    toml = _render(host, source, volume_tables, networks, containers, d)
    return Imported(toml, tuple(d.notes), dict(d.secrets.values))


def _container_names(services: dict[str, Any]) -> dict[str, str]:
    names: dict[str, str] = {}
    for svc in services:
        name, n = unit_name(str(svc)), 2
        while name in names.values():
            name, n = f"{unit_name(str(svc))[:60]}-{n}", n + 1
        names[svc] = name
    return names


def _top_volumes(volumes: dict[str, Any], d: Draft) -> dict[str, dict[str, Any]]:
    tables: dict[str, dict[str, Any]] = {}
    for key, spec in volumes.items():
        spec = spec or {}
        name = unit_name(str(key))
        d.top_volumes[str(key)] = name
        table: dict[str, Any] = {}
        opts = spec.get("driver_opts") or {}
        for compose_key, stack_key in (("type", "type"), ("o", "options"), ("device", "device")):
            if compose_key in opts:
                table[stack_key] = str(opts[compose_key])
        labels = {k: v or "" for k, v in mapping(spec.get("labels")).items()}
        if labels:
            table["labels"] = labels
        if spec.get("external"):
            d.note(f"volumes.{key}.external", "an external volume is created by this stack, empty",
                   f"copy its data into the podman volume {name!r} on the server before you switch")  # fmt: skip
        if spec.get("driver") not in (None, "local"):
            d.note(
                f"volumes.{key}.driver",
                f"{spec['driver']!r} is not translated",
                "it is a local volume",
            )
        tables[name] = table
    return tables


def _top_networks(networks: dict[str, Any], d: Draft) -> dict[str, dict[str, Any]]:
    tables: dict[str, dict[str, Any]] = {}
    for key, spec in networks.items():
        spec = spec or {}
        if key == "default":
            d.default_network = unit_name(str(spec.get("name") or d.default_network))
            name = d.default_network
        else:
            name = unit_name(str(spec.get("name") or key) if spec.get("external") else str(key))
        d.networks[str(key)] = name
        table: dict[str, Any] = {}
        ipam = (spec.get("ipam") or {}).get("config") or [{}]
        for k in ("subnet", "gateway"):
            if ipam[0].get(k):
                table[k] = str(ipam[0][k])
        if spec.get("internal"):
            table["internal"] = True
        if spec.get("enable_ipv6"):
            table["ipv6"] = True
        if spec.get("external"):
            d.note(f"networks.{key}.external", f"the external network is created by this stack as {name!r}",
                   "containers of other stacks on the host join it by that name")  # fmt: skip
        for extra in sorted(
            set(spec) - {"name", "external", "ipam", "internal", "enable_ipv6", "driver", "labels"}
        ):
            d.note(f"networks.{key}.{extra}", "not translated", "podman's bridge defaults apply")
        if spec.get("driver") not in (None, "bridge"):
            d.note(
                f"networks.{key}.driver",
                f"{spec['driver']!r} is not translated",
                "it is a bridge network",
            )
        tables[name] = table
    return tables


def _healthy_waits(
    services: dict[str, Any], containers: dict[str, dict[str, Any]], d: Draft
) -> None:
    """`condition: service_healthy`: the switch's health gate waits for the dependency's check."""
    for dep, waiters in d.healthy_waits.items():
        name = d.names[dep]
        for waiter in waiters:
            d.note(f"services.{waiter}.depends_on.{dep}.condition",
                   f"service_healthy: {d.names[waiter]} starts once {name} has started, not once it is healthy",
                   f"{d.names[waiter]} must retry its connection; the switch waits for {name}'s health check"
                   if "health" in containers[name] else f"{dep} has no healthcheck to wait for")  # fmt: skip
        if "health" in containers[name]:
            containers[name]["checks"] = [{"command": f"podman healthcheck run {name}"}]


def _unset_by_name(unset: list[Unset]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for u in unset:
        places = out.setdefault(u.name, [])
        if u.where not in places:
            places.append(u.where)
    return out


def _render(
    host: str, source: str, volumes: dict[str, dict[str, Any]],
    networks: dict[str, dict[str, Any]], containers: dict[str, dict[str, Any]], d: Draft,
) -> str:  # fmt: skip
    lines = [
        f"# Imported from {source} by `bundle import`; `bundle check {host}` says what is left to do.",
        "",
        "[host]",
        f"name = {toml_string(host)}",
        f"address = {toml_string(host + '.example.org')}",
        "",
    ]
    for kind, tables in (("volumes", volumes), ("networks", networks)):
        for name in sorted(tables):
            if kind == "volumes" and name not in d.volumes:
                continue
            lines.append(f"[{kind}.{name}]")
            lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in tables[name].items()]
            lines.append("")
    for name in sorted(d.volumes - set(volumes)):
        lines += [f"[volumes.{name}]", ""]
    for name, c in containers.items():
        lines.append(f"[containers.{name}]")
        lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in c.items()]
        lines.append("")
    return "\n".join(lines)


# --- writing ---------------------------------------------------------------------------------


@attrs.frozen
class Written:
    stack: Path
    secrets_file: str | None
    added: tuple[str, ...]
    changed: tuple[str, ...]


def import_compose(
    compose: Path, host: str, stacks_dir: Path, force: bool
) -> tuple[Written, Imported]:
    """Convert, then store the secrets and write the stack; nothing is written on an error."""
    dest = stack_path(stacks_dir, host)
    if dest.exists() and not force:
        raise InputError(f"{dest} already exists; pass --force to replace it")
    try:
        text = compose.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{compose}: cannot read: {getattr(exc, 'strerror', exc)}") from exc
    result = convert(text, host, str(compose), compose.resolve().parent)
    where: str | None = None
    added: list[str] = []
    changed: list[str] = []
    if result.secrets:
        try:
            f = open_file(stacks_dir, host, create=True)
        except SecretsError as exc:
            raise InputError(
                f"{plural(len(result.secrets), 'value')} in {compose} look like credentials and go to "
                f"bundle secrets: {exc}; nothing was written"
            ) from None
        assert f is not None
        for name, value in result.secrets.items():
            old = f.values.get(name)
            if old != value:
                (changed if old is not None else added).append(name)
                f.values[name] = value
        if added or changed or not f.exists:
            f.save()
        where = f.where
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
    with os.fdopen(fd, "w") as fh:
        fh.write(result.toml)
    os.chmod(tmp, 0o644)
    os.replace(tmp, dest)
    return Written(dest, where, tuple(added), tuple(changed)), result


def report(written: Written, result: Imported, host: str) -> str:
    lines = [f"wrote {written.stack}"]
    if written.secrets_file:
        lines.append(
            f"stored {plural(len(result.secrets), 'secret')} in "
            f"{written.secrets_file} ({', '.join(sorted(result.secrets))}); the stack names them"
        )
    if result.notes:
        lines.append(f"not translated ({len(result.notes)}):")
        lines += [f"  {note}" for note in result.notes]
    lines.append(f"next: bundle check {host}")
    return "\n".join(lines)
