"""A host's pinned SSH host key, as a recipient of its age secrets (`[secrets] host_key = true`).

The key is the one known_hosts holds for the host's address, found as a push finds it (the ssh
config's HostName, Port, HostKeyAlias and UserKnownHostsFile), so the server decrypts with the
key bundle already trusts. Only ssh-ed25519 (Debian's default) can be an age recipient here.
"""

from __future__ import annotations

from pathlib import Path

from builder.secrets.agefmt import Recipient, parse_recipient
from builder.secrets.fileformat import SecretsError
from builder.stack.load import load_stack


def pinned_host_key(stacks_dir: Path, host: str) -> Recipient:
    # start-up: paramiko's ssh config reader only when a host key must be looked up
    from builder.deploy.transport.known_hosts import KnownHosts
    from builder.deploy.transport.options import SshOptions
    from builder.deploy.transport.ssh_config import load_config, resolve

    table = load_stack(stacks_dir, host).data.get("host", {})
    address = str(table.get("address", host))
    options = SshOptions()
    config = load_config(options)
    ep = resolve(address, config, table.get("ssh_port"), table.get("ssh_user"))
    files = [*ep.host_keys.user_files, *ep.host_keys.global_files]
    keys = [k for k in KnownHosts.load(list(files)).lookup(ep.key_name()) if k.marker is None]
    ed = [k for k in keys if k.plain_type() == "ssh-ed25519"]
    if not ed and keys:
        kinds = ", ".join(sorted({k.plain_type() for k in keys}))
        raise SecretsError(
            f"{host}: the pinned host key of {ep.key_name()} is {kinds}; age secrets need an "
            "ssh-ed25519 host key (ssh-keygen -A on the server makes one): pin it, or set "
            "host_key = false"
        )
    if not ed:
        raise SecretsError(
            f"{host}: no host key of {ep.key_name()} is pinned in known_hosts yet; pin it "
            f"first: bundle status {host} --accept-new"
        )
    return parse_recipient(f"ssh-ed25519 {ed[0].blob} host:{host}", f"{ed[0].where()}")
