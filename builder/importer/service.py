"""One compose service becomes one `[containers.NAME]` table, and notes for what did not fit."""

from __future__ import annotations

import shlex
from typing import Any

from builder.base.errors import InputError
from builder.importer.credentials import (
    argument_credentials,
    has_url_password,
    looks_secret,
)
from builder.importer.draft import Draft
from builder.importer.interpolate import parse_env_file
from builder.importer.ports import stack_port
from builder.importer.report import no_equivalent
from builder.importer.volumes import volumes

RESTART = {"always": "always", "unless-stopped": "always", "on-failure": "on-failure", "no": "no"}
DEPLOY_RESTART = {"any": "always", "on-failure": "on-failure", "none": "no"}
HANDLED = {
    "image", "build", "ports", "volumes", "environment", "env_file", "depends_on", "command",
    "entrypoint", "user", "labels", "networks", "network_mode", "restart", "healthcheck",
    "container_name", "profiles", "extends", "secrets", "deploy", "expose",
}  # fmt: skip


def split_image(ref: str) -> tuple[str, str | None, str | None]:
    """docker.io/x/y:1.2@sha256:… → (image, version, digest)."""
    digest = None
    if "@" in ref:
        ref, digest = ref.split("@", 1)
    repo, _, tag = ref.rpartition(":")
    if not repo or "/" in tag:
        return ref, None, digest
    return repo, tag, digest


def full_image(image: str) -> str:
    first = image.split("/")[0]
    if "/" in image and ("." in first or ":" in first or first == "localhost"):
        return image
    return f"docker.io/{image}" if "/" in image else f"docker.io/library/{image}"


def words(value: Any) -> list[str]:
    return shlex.split(value) if isinstance(value, str) else [str(v) for v in value or []]


def mapping(value: Any) -> dict[str, str | None]:
    """environment/labels in either form: {K: V} or ["K=V", "K"] (None: no value given)."""
    if isinstance(value, dict):
        return {str(k): None if v is None else _scalar(v) for k, v in value.items()}
    out: dict[str, str | None] = {}
    for item in value or []:
        key, eq, val = str(item).partition("=")
        out[key] = val if eq else None
    return out


def _scalar(v: Any) -> str:
    return ("true" if v else "false") if isinstance(v, bool) else str(v)


def translate(svc: str, spec: dict[str, Any], d: Draft) -> dict[str, Any]:
    name, where = d.names[svc], f"services.{svc}"
    c: dict[str, Any] = {}
    _image(spec, where, c, d)
    if "profiles" in spec:
        c["enabled"] = False
        d.note(
            f"{where}.profiles",
            f"only started with profile {', '.join(map(str, spec['profiles'] or []))}",
            "imported with enabled = false; set enabled = true to run it",
        )
    if "command" in spec:
        c["command"] = words(spec["command"])
    if "entrypoint" in spec:
        ep = words(spec["entrypoint"])
        if ep:
            c["entrypoint"] = ep[0]
            if ep[1:]:
                c["command"] = ep[1:] + c.get("command", [])
        else:
            d.note(f"{where}.entrypoint", "an empty entrypoint is not translated",
                   "the image's entrypoint runs; give the program as entrypoint")  # fmt: skip
    if "user" in spec:
        c["user"] = str(spec["user"])
    _environment(svc, spec, where, c, d)
    _ports(spec, where, c, d)
    volumes(spec, where, c, d)
    _networks(svc, spec, where, c, d)
    _depends(svc, spec, where, c, d)
    labels = {k: v or "" for k, v in mapping(spec.get("labels")).items()}
    if labels:
        c["labels"] = labels
    _restart(spec, where, c, d)
    _health(spec, where, c, d)
    _secrets(svc, spec, where, c, d)
    _argument_secrets(svc, where, c, d)
    if spec.get("container_name") not in (None, name):
        d.note(
            f"{where}.container_name",
            f"the container is named {name!r}, not {spec['container_name']!r}",
            f"other containers reach it as {name!r}; change what connects to "
            f"{spec['container_name']!r}",
        )
    for key in sorted(set(spec) - HANDLED):
        if not str(key).startswith("x-"):
            note = no_equivalent(where, str(key))
            if note:
                d.notes.append(note)
    return c


def _image(spec: dict[str, Any], where: str, c: dict[str, Any], d: Draft) -> None:
    if "image" not in spec:
        d.note(f"{where}.build" if "build" in spec else where, "no image",
               "build the image, push it to a registry and set image and version")  # fmt: skip
        c["image"] = "REPLACE-ME"
        return
    if "build" in spec:
        d.note(
            f"{where}.build", "not translated", f"the server pulls {spec['image']}; push it there"
        )
    image, version, digest = split_image(str(spec["image"]))
    c["image"] = full_image(image)
    if version and version != "latest":
        c["version"] = version
    if digest:
        c["digest"] = digest
    if not version or version == "latest":
        d.note(f"{where}.image", f"{spec['image']!r} is not pinned", "set version to a real tag")


def _environment(svc: str, spec: dict[str, Any], where: str, c: dict[str, Any], d: Draft) -> None:
    env: dict[str, str] = {}
    for i, item in enumerate(_env_files(spec.get("env_file"))):
        path, required = item
        file = d.base_dir / path
        try:
            text = file.read_text()
        except FileNotFoundError:
            if required:
                raise InputError(
                    f"{where}.env_file[{i}]: {file} does not exist; create it or mark it "
                    "required: false"
                ) from None
            d.note(f"{where}.env_file[{i}]", f"{path} does not exist (required: false)")
            continue
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"{where}.env_file[{i}]: cannot read {file}: {exc}") from None
        values, unset = parse_env_file(text, d.variables, str(path))
        d.unset.extend(unset)
        env.update(values)
    for key, value in mapping(spec.get("environment")).items():
        if value is None:
            value = d.variables.get(key)
            if value is None:
                d.note(f"{where}.environment.{key}", "has no value and is not set here",
                       "the container does not get it; give it a value")  # fmt: skip
                env.pop(key, None)
                continue
        env[key] = value
    secrets = c.setdefault("secrets", [])
    for key, value in env.items():
        if value and (looks_secret(key) or has_url_password(value)):
            problem = d.secrets.check(value, f"{where}.environment.{key}")
            if problem is None:
                name = d.secrets.name_for(value, f"{svc}_{key}")
                secrets.append({"name": name, "env": key})
                continue
            d.notes.append(problem)
        c.setdefault("environment", {})[key] = value
    if not secrets:
        del c["secrets"]


def _env_files(value: Any) -> list[tuple[str, bool]]:
    items = [value] if isinstance(value, str | dict) else list(value or [])
    return [
        (str(i["path"]), bool(i.get("required", True))) if isinstance(i, dict) else (str(i), True)
        for i in items
    ]


def _ports(spec: dict[str, Any], where: str, c: dict[str, Any], d: Draft) -> None:
    ports = []
    for i, entry in enumerate(spec.get("ports") or []):
        port = stack_port(entry, f"{where}.ports[{i}]")
        d.notes.extend(port.notes)
        if port.text is not None:
            ports.append(port.text)
    if ports:
        c["ports"] = ports


def _networks(svc: str, spec: dict[str, Any], where: str, c: dict[str, Any], d: Draft) -> None:
    mode = spec.get("network_mode")
    if mode in ("host", "none"):
        c["networks"] = [mode]
        return
    if mode is not None:
        d.note(f"{where}.network_mode", f"{mode!r} not translated",
               f"it joins {d.default_network}; use a pod to share one network namespace")  # fmt: skip
    given = spec.get("networks")
    keys = list(given) if isinstance(given, dict | list) and given else ["default"]
    nets = []
    for key in keys:
        net = d.default_network if key == "default" else d.networks.get(str(key))
        if net is None:
            d.note(f"{where}.networks.{key}", "is not declared under the top-level networks")
            continue
        options = given.get(key) if isinstance(given, dict) else None
        for opt in sorted(options or {}):
            d.note(f"{where}.networks.{key}.{opt}", "not translated",
                   f"other containers reach it by its container name {d.names[svc]!r}")  # fmt: skip
        nets.append(net)
        d.used_networks.add(net)
    if nets:
        c["networks"] = nets
    if d.names[svc] != svc:
        d.note(where, f"the container name is {d.names[svc]!r} (service names become unit names)",
               f"other containers reach it as {d.names[svc]!r}, not {svc!r}; change what connects to {svc!r}")  # fmt: skip


def _depends(svc: str, spec: dict[str, Any], where: str, c: dict[str, Any], d: Draft) -> None:
    deps = spec.get("depends_on") or []
    entries = deps.items() if isinstance(deps, dict) else ((x, {}) for x in deps)
    out = []
    for dep, opts in entries:
        at = f"{where}.depends_on.{dep}"
        if dep not in d.names:
            d.note(at, "is not a service of this file")
            continue
        out.append(d.names[dep])
        cond = (opts or {}).get("condition", "service_started")
        if cond == "service_healthy":
            d.healthy_waits.setdefault(dep, []).append(svc)
        elif cond != "service_started":
            d.note(f"{at}.condition", f"{cond} not translated",
                   f"{d.names[svc]} starts once {d.names[dep]} has started; run a one-off task as a script")  # fmt: skip
        for opt in sorted(set(opts or {}) - {"condition"}):
            d.note(f"{at}.{opt}", "not translated",
                   f"{d.names[svc]} is stopped and started with {d.names[dep]} (Requires=)")  # fmt: skip
    if out:
        c["depends_on"] = out


def _restart(spec: dict[str, Any], where: str, c: dict[str, Any], d: Draft) -> None:
    policy = ((spec.get("deploy") or {}).get("restart_policy") or {}) if "deploy" in spec else {}
    if "restart" in spec:
        text = str(spec["restart"])
        base, _, tries = text.partition(":")
        if base not in RESTART:
            d.note(
                f"{where}.restart",
                f"{text!r} is not a compose restart policy",
                "it restarts always",
            )
        c["restart"] = RESTART.get(base, "always")
        if tries:
            d.note(f"{where}.restart", f"the retry limit {tries} is not translated",
                   "systemd restarts it until its start limit")  # fmt: skip
    elif policy.get("condition") in DEPLOY_RESTART:
        c["restart"] = DEPLOY_RESTART[policy["condition"]]
    for key in sorted(set(spec.get("deploy") or {}) - {"restart_policy"}):
        d.note(f"{where}.deploy.{key}", "not translated", "a stack sets no resource limits or "
               "replicas: the container runs unlimited, once")  # fmt: skip
    for key in sorted(set(policy) - {"condition"}):
        d.note(f"{where}.deploy.restart_policy.{key}", "not translated",
               "systemd restarts it until its start limit")  # fmt: skip


def _health(spec: dict[str, Any], where: str, c: dict[str, Any], d: Draft) -> None:
    hc = spec.get("healthcheck")
    if not isinstance(hc, dict) or hc.get("disable") or not hc.get("test"):
        return
    test = hc["test"]
    if isinstance(test, list):
        if test[:1] == ["NONE"]:
            return
        if test[:1] == ["CMD-SHELL"]:
            cmd = " ".join(str(t) for t in test[1:])
        else:
            cmd = shlex.join(str(t) for t in (test[1:] if test[:1] == ["CMD"] else test))
    else:
        cmd = str(test)
    health: dict[str, Any] = {"cmd": cmd}
    for key in ("interval", "timeout", "start_period"):
        if key in hc:
            health[key] = str(hc[key])
    if "retries" in hc:
        health["retries"] = int(hc["retries"])
    for key in sorted(
        set(hc) - {"test", "interval", "timeout", "start_period", "retries", "disable"}
    ):
        d.note(f"{where}.healthcheck.{key}", "not translated", "podman checks at the interval")
    c["health"] = health


def _secrets(svc: str, spec: dict[str, Any], where: str, c: dict[str, Any], d: Draft) -> None:
    refs = []
    for i, item in enumerate(spec.get("secrets") or []):
        at = f"{where}.secrets[{i}]"
        opts = item if isinstance(item, dict) else {"source": item}
        source = str(opts.get("source", ""))
        target = str(opts.get("target") or source)
        target = target if target.startswith("/") else f"/run/secrets/{target}"
        for key in sorted(set(opts) - {"source", "target"}):
            d.note(f"{at}.{key}", "not translated", "the file is readable by the container's user")
        top = d.top_secrets.get(source)
        if not isinstance(top, dict):
            d.note(at, f"secret {source!r} is not declared under the top-level secrets")
            continue
        value = _secret_value(source, top, f"secrets.{source}", d)
        if value is None:
            continue
        name = d.secrets.name_for(value, source)
        refs.append({"name": name, "file": target})
    if refs:
        c["secrets"] = c.get("secrets", []) + refs


def _argument_secrets(svc: str, where: str, c: dict[str, Any], d: Draft) -> None:
    """Credentials on a command line go to bundle secrets; the stack can give a secret only as
    an environment variable or a file, so the container waits, disabled, until it reads one."""
    name = d.names[svc]
    places = {"command": list(c.get("command", [])),
              "entrypoint": [c["entrypoint"]] if "entrypoint" in c else [],
              "healthcheck.test": [c["health"]["cmd"]] if "health" in c else []}  # fmt: skip
    for key, words in places.items():
        for arg in argument_credentials(words):
            problem = d.secrets.check(arg.value, f"{where}.{key}")
            if problem:
                d.notes.append(problem)
                continue
            secret = d.secrets.name_for(arg.value, f"{svc}_{arg.flag.lstrip('-')}")
            words[arg.word] = words[arg.word].replace(arg.value, f"<secret {secret}>")
            c["enabled"] = False
            d.note(f"{where}.{key}", f"the credential after {arg.flag} is stored as bundle secret "
                   f"{secret} and is not in the stack, which passes secrets only as environment "
                   f"variables or files; {name} is imported with enabled = false",
                   f"give {name} the secret in a way it reads it (an environment variable, a file, "
                   f'or a config template with {{{{ secret("{secret}") }}}}) in place of '
                   f"<secret {secret}>, then set enabled = true")  # fmt: skip
    if places["command"]:
        c["command"] = places["command"]
    if places["entrypoint"]:
        c["entrypoint"] = places["entrypoint"][0]
    if places["healthcheck.test"]:
        c["health"]["cmd"] = places["healthcheck.test"][0]


def _secret_value(source: str, top: dict[str, Any], at: str, d: Draft) -> str | None:
    if "file" in top:
        path = d.base_dir / str(top["file"])
        try:
            value = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            d.note(f"{at}.file", f"cannot read {path}: {exc}",
                   f"store it: bundle secrets set {d.host} NAME < FILE, and add it to the container")  # fmt: skip
            return None
    elif "environment" in top:
        value = d.variables.get(str(top["environment"]), "")
    else:
        d.note(at, "an external secret is not translated",
               f"store it: bundle secrets set {d.host} {source}, and add it to the container")  # fmt: skip
        return None
    if not value:
        d.note(at, "is empty", f"store a value: bundle secrets set {d.host} {source}")
        return None
    problem = d.secrets.check(value, at)
    if problem:
        d.notes.append(problem)
        return None
    return value
