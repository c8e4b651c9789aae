"""Deliver a generation's secrets to the server, beside the push and never inside the bundle.

After the bundle's objects, the deployer asks the switcher which secret versions it lacks
(`secrets-have`: names and fingerprints only), then sends just those values over the same
transport (`secrets-receive --generation N`, JSON on stdin). The server keeps them in
STATE/secrets/NAME/FINGERPRINT (0600, in 0700 folders), so an older generation finds its own
versions when it is rolled back to. The passphrase is needed only when a value must travel.

`deliver_age` sends each missing version as its age file instead, which the server opens
with its own SSH host key: no secret is needed on the deploying machine. Only a switcher
that has AGE_MARKER reads such items (`server_decrypts`).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

from activate.manifest_format import Manifest
from activate.protocol import (
    SecretCiphertext,
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
from builder.secrets.files import AgeSecretsFile, host_secrets
from builder.secrets.recipients import host_key_wanted

# A bundle whose switcher has this module opens secrets delivered as age files.
AGE_MARKER = "activate/agecrypt.py"


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


def server_decrypts(manifest: Manifest) -> bool:
    """Whether the generation's switcher opens secrets delivered as age files."""
    return AGE_MARKER in manifest.files


def _missing(
    server: Server, gen: Generation, manifest: Manifest, wanted: Mapping[str, str | None]
) -> tuple[SecretVersion, ...]:
    """The versions the server asks for, each checked to be one the generation needs."""
    require_set(gen, manifest)
    cwd = server.switcher_dir(manifest.switcher)
    ask = [to_json(SecretVersion(name=n, fingerprint=fp)) for n, fp in wanted.items() if fp]
    asked = json.dumps(ask).encode()
    missing = server.call("secrets-have", reply=SecretsMissing, cwd=cwd, stdin=asked).missing
    for item in missing:
        if wanted.get(item.name) != item.fingerprint:
            raise InputError(f"{gen.host}: the server asked for {item.name!r}, which is not needed")
    return missing


def _send(
    server: Server,
    gen: Generation,
    manifest: Manifest,
    payload: tuple[SecretValue | SecretCiphertext, ...],
) -> list[str]:
    result = server.call(
        "secrets-receive",
        "--generation",
        str(gen.number),
        reply=SecretsStored,
        cwd=server.switcher_dir(manifest.switcher),
        stdin=json.dumps(to_json(SecretsDelivery(secrets=payload))).encode(),
    )
    return list(result.stored)


def deliver_age(server: Server, gen: Generation, age_files: Mapping[str, bytes]) -> list[str]:
    """Send the versions the server lacks as their age files (name -> the file's bytes, whose
    SHA-256 is the version), for the server to decrypt; the names sent."""
    manifest = gen.load_manifest()
    wanted = needed(manifest)
    if not wanted:
        return []
    if not server_decrypts(manifest):
        raise InputError(
            f"{gen.host}: generation {gen.number}'s switcher predates secrets the server "
            "decrypts itself; push its secrets as values, or build and push a new generation"
        )
    missing = _missing(server, gen, manifest, wanted)
    payload = []
    for item in missing:
        data = age_files.get(item.name)
        if data is None or hashlib.sha256(data).hexdigest() != item.fingerprint:
            state = "no longer has it" if data is None else "now holds another version"
            raise InputError(
                f"{gen.host}: generation {gen.number} needs the age file secret {item.name} had "
                f"when it was built, and the repository {state}; build a new generation "
                f"(bundle build {gen.host}) and push that"
            )
        encoded = base64.b64encode(data).decode()
        payload.append(SecretCiphertext(name=item.name, fingerprint=item.fingerprint, age=encoded))
    return _send(server, gen, manifest, tuple(payload)) if payload else []


def deliver(server: Server, gen: Generation, stacks_dir: Path | None) -> list[str]:
    """Send the secret versions the server lacks; the names sent (never the values)."""
    manifest = gen.load_manifest()
    wanted = needed(manifest)
    if not wanted:
        return []
    missing = _missing(server, gen, manifest, wanted)
    if not missing:
        return []
    if stacks_dir is None:
        raise InputError(f"{gen.host}: the server lacks secrets and no stacks folder is known")
    local = host_secrets(stacks_dir, gen.host)
    # the host's key among the recipients: its age files travel, and it decrypts them itself
    sealed = server_decrypts(manifest) and host_key_wanted(stacks_dir, gen.host)
    payload: list[SecretValue | SecretCiphertext] = []
    for item in missing:
        name, fp = item.name, item.fingerprint
        if local.fingerprint(name) != fp:
            where = " or ".join(local.where)
            state = "now holds another value" if name in local.names() else "no longer holds it"
            raise InputError(
                f"{gen.host}: generation {gen.number} needs the value secret {name} had when it "
                f"was built, and {where} {state}; build a new generation (bundle build "
                f"{gen.host}) and push that"
            )
        source = local.source(name)
        if sealed and isinstance(source, AgeSecretsFile):
            encoded = base64.b64encode(source.files[name]).decode()
            payload.append(SecretCiphertext(name=name, fingerprint=fp, age=encoded))
            continue
        value = local.value(name)
        assert value is not None
        encoded = base64.b64encode(value.encode()).decode()
        payload.append(SecretValue(name=name, fingerprint=fp, value=encoded))
    return _send(server, gen, manifest, tuple(payload))
