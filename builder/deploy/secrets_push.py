"""Deliver a generation's secrets to the server, beside the push and never inside the bundle.

After the bundle's objects, the deployer asks the switcher which secret versions it lacks
(`secrets-have`: names and fingerprints only), then sends just those values over the same
transport (`secrets-receive --generation N`, JSON on stdin). The server keeps them in
STATE/secrets/NAME/FINGERPRINT (0600, in 0700 folders), so an older generation finds its own
versions when it is rolled back to. The passphrase is needed only when a value must travel.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

from activate.manifest_format import Manifest
from activate.protocol import (
    SecretsDelivery,
    SecretsMissing,
    SecretsStored,
    SecretValue,
    SecretVersion,
    to_json,
)
from builder.base.errors import InputError
from builder.base.words import plural
from builder.bundle.store import Generation
from builder.deploy.remote import Server
from builder.secrets.files import host_secrets


def needed(manifest: Manifest) -> dict[str, str | None]:
    """Each secret the generation uses, by name, with its fingerprint (None: it was not set)."""
    return {name: use.fingerprint for name, use in sorted(manifest.secrets.items())}


def require_set(gen: Generation, manifest: Manifest | None = None) -> None:
    """Refuse, before anything travels, a generation built while secrets were not set."""
    wanted = needed(manifest if manifest is not None else gen.load_manifest())
    unset = [n for n, fp in wanted.items() if not fp]
    if unset:
        raise InputError(
            f"{gen.host}: generation {gen.number} was built without "
            f"{plural(len(unset), 'secret')} ({', '.join(unset)}); set them "
            f"(bundle secrets set {gen.host} NAME), build, and push the new generation"
        )


def deliver(server: Server, gen: Generation, stacks_dir: Path | None) -> list[str]:
    """Send the secret versions the server lacks; the names sent (never the values)."""
    manifest = gen.load_manifest()
    wanted = needed(manifest)
    if not wanted:
        return []
    require_set(gen, manifest)
    cwd = server.switcher_dir(manifest.switcher)
    ask = [to_json(SecretVersion(name=n, fingerprint=fp)) for n, fp in wanted.items() if fp]
    asked = json.dumps(ask).encode()
    missing = server.call("secrets-have", reply=SecretsMissing, cwd=cwd, stdin=asked).missing
    if not missing:
        return []
    if stacks_dir is None:
        raise InputError(f"{gen.host}: the server lacks secrets and no stacks folder is known")
    local = host_secrets(stacks_dir, gen.host)
    payload: list[SecretValue] = []
    for item in missing:
        name, fp = item.name, item.fingerprint
        if wanted.get(name) != fp:
            raise InputError(f"{gen.host}: the server asked for {name!r}, which is not needed")
        if local.fingerprint(name) != fp:
            where = " or ".join(local.where)
            state = "no longer holds it" if local.value(name) is None else "now holds another value"
            raise InputError(
                f"{gen.host}: generation {gen.number} needs the value secret {name} had when it "
                f"was built, and {where} {state}; build a new generation (bundle build "
                f"{gen.host}) and push that"
            )
        value = local.value(name)
        assert value is not None
        encoded = base64.b64encode(value.encode()).decode()
        payload.append(SecretValue(name=name, fingerprint=fp, value=encoded))
    result = server.call(
        "secrets-receive",
        "--generation",
        str(gen.number),
        reply=SecretsStored,
        cwd=cwd,
        stdin=json.dumps(to_json(SecretsDelivery(secrets=tuple(payload)))).encode(),
    )
    return list(result.stored)
