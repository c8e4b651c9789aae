"""Registry credentials, found where podman finds them (containers-auth.json(5)).

Files, in order, the first that has an entry for the image wins:

    $REGISTRY_AUTH_FILE                        (when set, the only one read, as podman's --authfile)
    ${XDG_RUNTIME_DIR}/containers/auth.json    (what `podman login` writes)
    ${XDG_CONFIG_HOME:-~/.config}/containers/auth.json
    ~/.docker/config.json

In a file, `auths` is keyed by a registry (`quay.io`) or a namespace (`quay.io/team/app`); the
most specific key that is a prefix of the image at a `/` wins. `auth` is base64 of `USER:PASSWORD`.
Credential helpers (`credHelpers`, `credsStore`) are not run: such an image is asked anonymously.
A credential is never printed: messages name the file, never its content.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping
from pathlib import Path

import attrs

from activate import strict_json
from builder.base.errors import BundleError

DOCKER_HUB_KEYS = ("docker.io", "index.docker.io", "https://index.docker.io/v1/")


@attrs.frozen(repr=False)
class Credential:
    """A user and password for one registry, and the file they came from (for messages)."""

    user: str
    password: str
    source: str

    def __repr__(self) -> str:
        return f"Credential(user={self.user!r}, source={self.source!r})"

    def basic(self) -> str:
        """The value of an `Authorization: Basic …` header."""
        return base64.b64encode(f"{self.user}:{self.password}".encode()).decode()


def auth_files(env: Mapping[str, str] | None = None) -> list[Path]:
    """The files to read, in podman's order."""
    source = os.environ if env is None else env
    override = source.get("REGISTRY_AUTH_FILE")
    if override:
        return [Path(override)]
    home = Path(source.get("HOME") or Path.home())
    files = []
    if source.get("XDG_RUNTIME_DIR"):
        files.append(Path(source["XDG_RUNTIME_DIR"]) / "containers" / "auth.json")
    config = Path(source.get("XDG_CONFIG_HOME") or home / ".config")
    files.append(config / "containers" / "auth.json")
    files.append(home / ".docker" / "config.json")
    return files


def _keys(registry: str, repository: str) -> list[str]:
    """Entry keys that match an image, the most specific first."""
    parts = repository.split("/")
    keys = [f"{registry}/{'/'.join(parts[:n])}" for n in range(len(parts), 0, -1)]
    if registry == "docker.io":
        return keys + list(DOCKER_HUB_KEYS)
    return [*keys, registry]


def _read(path: Path) -> dict[str, object] | None:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise BundleError(f"{path}: cannot read the registry auth file ({e.strerror})", 2) from None
    try:
        doc = strict_json.loads(data, str(path), "")
    except strict_json.JsonRefused as e:
        raise BundleError(f"{e.message}: fix the file or log in again (podman login)", 2) from None
    auths = doc.get("auths") if isinstance(doc, dict) else None
    return auths if isinstance(auths, dict) else {}


def credential_for(
    registry: str, repository: str, env: Mapping[str, str] | None = None
) -> Credential | None:
    """The credential podman would use for REGISTRY/REPOSITORY, or None (ask anonymously)."""
    for path in auth_files(env):
        auths = _read(path)
        if not auths:
            continue
        for key in _keys(registry, repository):
            entry = auths.get(key)
            if not isinstance(entry, dict) or not isinstance(entry.get("auth"), str):
                continue
            try:
                user, sep, password = (
                    base64.b64decode(entry["auth"], validate=True).decode().partition(":")
                )
            except (binascii.Error, UnicodeDecodeError):
                sep = ""
            if not sep or not user:
                raise BundleError(
                    f"{path}: the entry for {key} is not base64 of USER:PASSWORD; "
                    f"log in again (podman login {registry})",
                    2,
                )
            return Credential(user, password, str(path))
    return None
