"""`bundle` with its secrets kept as age files: the version of a secret is the SHA-256 of
$AGE_FILES/NAME.age, and push delivers those files for the server to open with its host key.

The tests of server-side decryption run the real command through this until the repository's
own secrets files are age files; the values in stacks/secrets/*.enc are then never sent.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

from builder.bundle.store import Generation
from builder.cli import main
from builder.deploy import deployer, secrets_push
from builder.deploy.remote import Server
from builder.secrets import files


def age_files() -> dict[str, bytes]:
    return {p.stem: p.read_bytes() for p in Path(os.environ["AGE_FILES"]).glob("*.age")}


def fingerprint(self: files.HostSecrets, name: str) -> str | None:
    data = age_files().get(name)
    return hashlib.sha256(data).hexdigest() if data is not None else None


def deliver(server: Server, gen: Generation, stacks_dir: Path | None) -> list[str]:
    return secrets_push.deliver_age(server, gen, age_files())


files.HostSecrets.fingerprint = fingerprint  # type: ignore[method-assign]
deployer.deliver = deliver  # type: ignore[assignment]
sys.exit(main(sys.argv[1:]))
