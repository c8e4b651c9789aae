"""Secrets at build time: names and keyed fingerprints go into the bundle, values never do.

The renderer asks a `SecretBinding` three things:

* `podman_name(NAME, unit, at)`: a container's `Secret=` line names the podman secret
  `NAME-<fingerprint[:12]>`, one podman secret per version, so rotating a value changes the
  text of exactly the units that use it (their closure), and an older generation still names
  the version it was built with;
* `template_function()`: `{{ secret("NAME") }}` in a template leaves a marker
  (`@@bundle-secret:NAME@@`) in the bundle file;
* `file_target(path, ...)`: a bundle file holding markers is completed on the server into
  STATE/rendered/<id>/<path> (root-only folder); the unit mounts or runs that path. `id` covers
  the file's sha256, its mode and the fingerprints it embeds.

Values are read only to compute fingerprints, and only when a stack refers to a secret. With no
secrets file for the host at all (a fresh clone), the build goes through with the fingerprints
marked unset and push refuses; with a secrets file, a name it lacks is an error.
"""

from __future__ import annotations

import hashlib
import posixpath
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jinja2

from builder.base.errors import Problem
from builder.secrets.agecheck import check_label
from builder.secrets.files import (
    ALTERED_RE,
    MARKER_RE,
    HostSecrets,
    SecretsError,
    any_file,
    host_secrets,
    label_shown,
    marker,
)
from builder.stack.names import NAME, NAME_HINT


class SecretBinding:
    def __init__(self, stacks_dir: Path, host: str, state_dir: str) -> None:
        self.stacks_dir = stacks_dir
        self.host = host
        self.state_dir = state_dir
        self._secrets: HostSecrets | None = None
        self._looked = False
        self.used_by: dict[str, set[str]] = {}
        self.podman: dict[str, str] = {}
        self.rendered: dict[str, dict[str, Any]] = {}
        self._undefined: dict[tuple[str, str], tuple[Any, ...] | str] = {}
        self._altered: list[tuple[str, Any]] = []

    # values ---------------------------------------------------------------------------------

    def secrets(self) -> HostSecrets | None:
        """The host's decrypted secrets, or None when it has no secrets file yet."""
        if not self._looked:
            self._looked = True
            if any_file(self.stacks_dir, self.host):
                self._secrets = host_secrets(self.stacks_dir, self.host)
                gaps = [
                    line
                    for f in self._secrets.files
                    if f.kind == "age"
                    for line in check_label(self.stacks_dir, f.label)
                ]
                if gaps:  # a recipient the stacks list could not open these files
                    raise SecretsError("\n".join(gaps))
        return self._secrets

    def fingerprint(self, name: str) -> str | None:
        found = self.secrets()
        return found.fingerprint(name) if found else None

    def undefined_message(self, name: str) -> str:
        own = label_shown(self.stacks_dir, self.host)
        shared = label_shown(self.stacks_dir, "shared")
        return (
            f"secret {name!r} is not defined in {own} or {shared}; "
            f"add it: bundle secrets set {self.host} {name}"
        )

    def _use(self, name: str, unit: str, at: tuple[Any, ...] | str) -> str | None:
        self.used_by.setdefault(name, set()).add(unit)
        fp = self.fingerprint(name)
        if fp is None and self.secrets() is not None:
            self._undefined.setdefault((name, str(at)), at)
        return fp

    # what the renderer asks -------------------------------------------------------------------

    def podman_name(self, name: str, unit: str, at: tuple[Any, ...]) -> str:
        fp = self._use(name, unit, at)
        podman = f"{name}-{fp[:12]}" if fp else name
        self.podman[name] = podman
        return podman

    def template_function(self) -> Callable[[str], str]:
        def secret(name: Any) -> str:
            if not isinstance(name, str) or not NAME.fullmatch(name):
                raise jinja2.TemplateRuntimeError(f"secret({name!r}): invalid name: {NAME_HINT}")
            found = self.secrets()
            if found is not None and found.fingerprint(name) is None:
                raise jinja2.TemplateRuntimeError(self.undefined_message(name))
            return marker(name)

        return secret

    def file_target(
        self, path: str, data: bytes, mode: int, unit: str, origin: str | tuple[Any, ...]
    ) -> str | None:
        """Where the server puts the completed file, when it embeds secrets (else None)."""
        if len(ALTERED_RE.findall(data)) != len(MARKER_RE.findall(data)):
            self._altered.append((path, origin))  # the server would leave it as it is
        names = sorted({m.decode() for m in MARKER_RE.findall(data)})
        if not names:
            return None
        fps = {n: self._use(n, unit, origin) for n in names}
        h = hashlib.sha256(f"{hashlib.sha256(data).hexdigest()}\0{mode:04o}\0{path}\0".encode())
        for n in names:
            h.update(f"{n}\0{fps[n] or 'unset'}\n".encode())
        ident = h.hexdigest()[:16]
        self.rendered[path] = {"id": ident, "secrets": names}
        return posixpath.join(self.state_dir, "rendered", ident, path)

    # what the build gets back -----------------------------------------------------------------

    def problems(self, raw_loader: Callable[[], Any]) -> list[Problem]:
        if not self._undefined and not self._altered:
            return []
        raw = raw_loader()
        out = []
        found = [(self.undefined_message(name), at) for (name, _), at in self._undefined.items()]
        found += [
            (
                f"{path}: a secret() marker was changed after secret() made it (by a filter?); "
                'write {{ secret("NAME") }} alone, the server fills in the value as it is',
                at,
            )
            for path, at in self._altered
        ]
        for message, at in sorted(found, key=str):
            if isinstance(at, tuple):
                out.append(raw.problem(at, message))
            else:
                out.append(Problem(message, at))
        return out

    def manifest_entries(self) -> dict[str, Any]:
        return {
            name: {
                "fingerprint": self.fingerprint(name),
                "podman_secret": self.podman.get(name),
                "used_by": sorted(units),
            }
            for name, units in sorted(self.used_by.items())
        }

    def unset(self) -> list[str]:
        return sorted(n for n in self.used_by if self.fingerprint(n) is None)
