"""Who a label's age files are encrypted to, from the stacks.

A host's files (stacks/secrets/HOST/) go to the `recipients` of its stack's `[secrets]` table;
`shared` goes to the union of the recipients of every host stack that lists some. The recovery
key's public key (stacks/secrets/recovery.pub), when there is one, is a recipient of every file.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from builder.base.errors import InputError
from builder.secrets.agefmt import Recipient, parse_recipient
from builder.secrets.fileformat import SecretsError
from builder.secrets.identities import RECOVERY_PUB
from builder.stack import stackfiles
from builder.stack.load import HOST_NAME, display_path, load_stack, stack_path

SHARED = "shared"


def hosts(stacks_dir: Path) -> list[str]:
    return sorted(p.stem for p in stacks_dir.glob("*.toml") if HOST_NAME.fullmatch(p.stem))


def _table(stacks_dir: Path, host: str) -> tuple[dict[str, Any], str]:
    try:
        raw = load_stack(stacks_dir, host)
    except InputError as exc:
        raise SecretsError(str(exc).split("\n", 1)[0]) from None
    table = raw.data.get("secrets", {})
    rootless = isinstance(raw.data.get("host"), dict) and raw.data["host"].get("rootless") is True
    if rootless and isinstance(table, dict) and table.get("host_key") is True:
        file, _ = raw.locate(("secrets", "host_key"))
        raise SecretsError(
            f"{display_path(file, raw.stacks_dir)}: secrets.host_key: {host} is rootless, and "
            "its switcher cannot read the host key (root only); set host_key = false for it"
        )
    file, _ = raw.locate(("secrets", "recipients"))
    where = f"{display_path(file, raw.stacks_dir)}: secrets.recipients"
    if not isinstance(table, dict):
        raise SecretsError(f"{where}: [secrets] must be a table")
    return table, where


HostKeys = Callable[[Path, str], Recipient]
_HOST_KEYS: list[HostKeys] = []


def use_host_keys(resolver: HostKeys) -> None:
    """How `host_key = true` finds a host's key (commands that encrypt give the pinned one)."""
    _HOST_KEYS[:] = [resolver]


def host_key_wanted(stacks_dir: Path, host: str) -> bool:
    table, where = _table(stacks_dir, host)
    wanted = table.get("host_key", False)
    if not isinstance(wanted, bool):
        raise SecretsError(f"{where.rsplit('.', 1)[0]}.host_key: must be true or false")
    return wanted


def host_key_of(stacks_dir: Path, host: str) -> Recipient:
    """The host's key, or a stand-in (its tag unknown) where no resolver is given: the build's
    check then asks for one SSH stanza it cannot name, without reading known_hosts."""
    if _HOST_KEYS:
        return _HOST_KEYS[0](stacks_dir, host)
    return Recipient(f"host key of {host}", "ssh-ed25519", None, host_key=host)


def host_recipients(stacks_dir: Path, host: str, host_key: bool = True) -> list[Recipient]:
    """The recipients a host's stack lists (its `[secrets] recipients`), in order, then its
    host key when `host_key = true`. A host with no stack file yet (a compose file being
    imported, say) lists nobody: its secrets start as a passphrase file, as before age."""
    if stackfiles.absent(stack_path(stacks_dir.resolve(), host)):
        return []
    table, where = _table(stacks_dir, host)
    listed = table.get("recipients", [])
    if not isinstance(listed, list) or not all(isinstance(r, str) for r in listed):
        raise SecretsError(f"{where}: must be a list of strings (age1… or ssh-ed25519 AAAA…)")
    out: list[Recipient] = []
    for i, text in enumerate(listed):
        found = parse_recipient(text, f"{where}[{i}]")
        if found.text not in {r.text for r in out}:
            out.append(found)
    if host_key and host_key_wanted(stacks_dir, host):
        key = host_key_of(stacks_dir, host)
        if key.text not in {r.text for r in out}:
            out.append(key)
    return out


def recovery(stacks_dir: Path) -> Recipient | None:
    path = stacks_dir / "secrets" / RECOVERY_PUB
    if stackfiles.absent(path):
        return None
    try:
        text = stackfiles.read_text(path, stacks_dir)
    except stackfiles.UnreadableFile as exc:
        raise SecretsError(str(exc.problem)) from None
    return parse_recipient(text, f"{stacks_dir.name}/secrets/{RECOVERY_PUB}")


def label_recipients(stacks_dir: Path, label: str) -> list[Recipient]:
    """Every recipient of a label's files: its hosts' lists, then the recovery key."""
    if label == SHARED:
        out: list[Recipient] = []
        for host in hosts(stacks_dir):
            for r in host_recipients(stacks_dir, host):
                if r.text not in {o.text for o in out}:
                    out.append(r)
    else:
        out = host_recipients(stacks_dir, label)
    if not out:
        return []
    extra = recovery(stacks_dir)
    if extra is not None and extra.text not in {o.text for o in out}:
        out.append(extra)
    return out
