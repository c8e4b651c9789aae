"""`bundle secrets recipients|check|migrate|recovery-key`: the age files and who opens them."""

from __future__ import annotations

import argparse
import json
import re
import tomllib
from pathlib import Path

import pyrage

from builder.base.errors import InputError
from builder.base.words import plural
from builder.commands.common import paths_from
from builder.deploy.hostkey import pinned_host_key
from builder.secrets import identities
from builder.secrets.agecheck import age_labels, check_label
from builder.secrets.agefmt import Recipient, parse_recipient
from builder.secrets.agestore import AgeSecretsFile, label_dir, write_atomic
from builder.secrets.files import (
    SHARED,
    Passphrases,
    SecretsError,
    can_prompt,
    file_path,
    open_enc,
    open_file,
    shown,
)
from builder.secrets.passphrases import present
from builder.secrets.recipients import host_recipients, label_recipients, use_host_keys


def _stacks(args: argparse.Namespace) -> Path:
    return Path(paths_from(args).stacks_dir)


# --- the [secrets] table of a host's stack file -----------------------------------------------

SECTION_RE = re.compile(r"(?m)^\[secrets\][ \t]*(#[^\n]*)?$")
LIST_RE = re.compile(r"(?ms)^recipients[ \t]*=[ \t]*\[.*?\][ \t]*(#[^\n]*)?$")


def _written(r: Recipient) -> str:
    return f"{r.text} {r.comment}".strip()


def with_recipients(text: str, keys: list[Recipient]) -> str:
    """The stack file's text with `[secrets] recipients` set to keys; the rest as it was."""
    listed = "recipients = [\n" + "".join(f"  {json.dumps(_written(k))},\n" for k in keys) + "]"
    section = SECTION_RE.search(text)
    if section is None:
        return text.rstrip("\n") + "\n\n[secrets]\n" + listed + "\n"
    end = re.compile(r"(?m)^\s*\[").search(text, section.end())
    stop = end.start() if end else len(text)
    found = LIST_RE.search(text, section.end(), stop)
    if found is None:
        return text[: section.end()] + "\n" + listed + text[section.end() :]
    return text[: found.start()] + listed + text[found.end() :]


def _listed(text: str) -> list[str] | None:
    try:
        found = tomllib.loads(text).get("secrets", {}).get("recipients")
    except (tomllib.TOMLDecodeError, AttributeError):
        return None
    return found if isinstance(found, list) else None


def _reencrypt_all(stacks: Path, labels: list[str], change: object) -> dict[str, list[str]]:
    """Decrypt every file of labels, run change(), then encrypt them again to the new lists."""
    opened = {}
    for label in labels:
        f = open_file(stacks, label)
        if isinstance(f, AgeSecretsFile) and f.files:
            values = {n: f.decrypt(n) for n in sorted(f.files)}  # all read before anything changes
            opened[label] = (f, values)
    if callable(change):
        change()
    done = {}
    for label, (f, values) in opened.items():
        recipients = f.recipients()
        f.values = values
        done[label] = f.reencrypt(recipients)
    return done


def cmd_recipients(args: argparse.Namespace) -> int:
    use_host_keys(pinned_host_key)  # host_key = true: the key known_hosts pins
    stacks = _stacks(args)
    host = args.host
    if host == SHARED:
        raise InputError(
            "recipients belong to hosts: shared files go to every host's recipients; "
            "give a host name"
        )
    stack_file = stacks / f"{host}.toml"
    if not stack_file.is_file():
        raise InputError(f"{shown(stack_file, stacks)} does not exist: give a host name")
    current = host_recipients(stacks, host, host_key=False)  # the list as written
    labels = [host, SHARED]
    if args.op == "list":
        for r in label_recipients(stacks, host):
            print(_written(r))
        return 0
    if args.op == "apply":
        done = _reencrypt_all(stacks, labels, None)
        _report(done, stacks, "encrypted again to the listed recipients")
        return 0
    if not args.key:
        raise InputError(
            f"recipients {args.op}: give the key: bundle secrets recipients {args.op} {host} KEY"
        )
    key = parse_recipient(args.key, "recipient")
    known = [r.text for r in current]
    if args.op == "add":
        if key.text in known:
            print(f"{host}: {key.shown()} is already a recipient; nothing was changed")
            return 0
        new = [*current, key]
    else:
        if key.text not in known:
            raise InputError(f"{host}: {key.shown()} is not a recipient of {host}")
        new = [r for r in current if r.text != key.text]
        if not new and present(label_dir(stacks, host)):
            raise InputError(
                f"{host}: {key.shown()} is its last recipient; add another first (no one could "
                "decrypt its files)"
            )
    before = stack_file.read_text()
    after = with_recipients(before, new)
    if _listed(after) != [_written(r) for r in new]:  # an unusual layout: never guess
        raise InputError(
            f"{shown(stack_file, stacks)}: cannot edit its [secrets] recipients in place; write "
            f"the list by hand, then run: bundle secrets recipients apply {host}"
        )

    def change() -> None:
        write_atomic(stack_file, after.encode())

    try:
        done = _reencrypt_all(stacks, labels, change)
    except BaseException:
        if stack_file.read_text() != before:
            write_atomic(stack_file, before.encode())  # the list and the files stay in step
        raise
    verb = "added to" if args.op == "add" else "removed from"
    print(f"{host}: {key.shown()} {verb} [secrets] recipients in {shown(stack_file, stacks)}")
    _report(done, stacks, "encrypted again")
    return 0


def _report(done: dict[str, list[str]], stacks: Path, what: str) -> None:
    for label, names in done.items():
        where = shown(label_dir(stacks, label), stacks)
        print(f"{label}: {plural(len(names), 'file')} in {where}/ {what}")


def cmd_check(args: argparse.Namespace) -> int:
    use_host_keys(pinned_host_key)  # host_key = true: the key known_hosts pins
    stacks = _stacks(args)
    labels = [args.host, SHARED] if args.host else age_labels(stacks)
    gaps: list[str] = []
    checked = 0
    for label in labels:
        if present(label_dir(stacks, label)):
            gaps += check_label(stacks, label)
            checked += 1
    if gaps:
        raise SecretsError("\n".join(gaps))
    print(
        f"{plural(checked, 'folder')} of age secrets checked: every file is encrypted to its recipients"
    )
    return 0


# --- migrate: .enc files to one age file per name ----------------------------------------------


def cmd_migrate(args: argparse.Namespace) -> int:
    use_host_keys(pinned_host_key)  # host_key = true: the key known_hosts pins
    stacks = _stacks(args)
    labels = args.labels or sorted(
        p.stem for p in (stacks / "secrets").glob("*.enc") if not p.name.startswith(".")
    )
    if not labels:
        print("nothing to migrate: no stacks/secrets/*.enc file")
        return 0
    for label in labels:
        migrate(stacks, label)
    return 0


def migrate(stacks: Path, label: str) -> None:
    enc = file_path(stacks, label)
    if not present(enc):
        raise InputError(f"{label}: {shown(enc, stacks)} does not exist; nothing to migrate")
    recipients = label_recipients(stacks, label)
    if not recipients:
        raise InputError(
            f"{label}: no recipients to encrypt to: list them in [secrets] recipients of "
            f"stacks/{label}.toml first (bundle secrets recipients add {label} KEY)"
        )
    old = open_enc(stacks, label)
    assert old is not None
    values = dict(old.values)
    target = AgeSecretsFile(stacks, label, exists=present(label_dir(stacks, label)))
    for name, value in sorted(values.items()):
        if name in target.files and _opens_to(target, name) == value:
            continue  # an earlier, interrupted run wrote this one already
        target.files.pop(name, None)
        target.values[name] = value
    target.save()
    check = AgeSecretsFile(stacks, label)
    extra = sorted(set(check.files) - set(values))
    wrong = [n for n in sorted(values) if _opens_to(check, n) != values[n]]
    if extra or wrong:
        raise SecretsError(
            f"{label}: {shown(enc, stacks)} was kept: "
            + (f"{', '.join(wrong)} did not decrypt to the same value" if wrong else "")
            + (
                f"{'; ' if wrong else ''}{shown(label_dir(stacks, label), stacks)}/ also holds {', '.join(extra)}"
                if extra
                else ""
            )
        )
    enc.unlink()
    print(
        f"{label}: {plural(len(values), 'secret')} moved from {shown(enc, stacks)} to "
        f"{shown(label_dir(stacks, label), stacks)}/, each checked by decrypting it"
    )


def _opens_to(f: AgeSecretsFile, name: str) -> str | None:
    try:
        return f.decrypt(name)
    except SecretsError as exc:
        if "no identity" in str(exc):
            raise SecretsError(
                f"{exc}; the .enc file was kept (a migration checks every value by decrypting it)"
            ) from None
        raise


# --- the recovery key --------------------------------------------------------------------------


def cmd_recovery_key(args: argparse.Namespace) -> int:
    use_host_keys(pinned_host_key)  # host_key = true: the key known_hosts pins
    stacks = _stacks(args)
    key_path = stacks / "secrets" / identities.RECOVERY_KEY
    pub_path = stacks / "secrets" / identities.RECOVERY_PUB
    if present(key_path) or present(pub_path):
        raise InputError(
            f"{shown(key_path, stacks)} exists already; remove it and {shown(pub_path, stacks)} "
            "first to make a new one"
        )
    passphrase = Passphrases(stacks).given("recovery")
    if passphrase is None:
        if not can_prompt():
            raise InputError(
                "recovery-key: give its passphrase in $BUNDLE_PASSPHRASE_RECOVERY or run on a terminal"
            )
        secret = Passphrases(stacks).prompt(shown(key_path, stacks), new=True)
    else:
        secret = passphrase[0]
    identity = pyrage.x25519.Identity.generate()
    public = str(identity.to_public())
    text = f"# bundle recovery key\n# public key: {public}\n{identity}\n"
    labels = [lb for lb in age_labels(stacks) if present(label_dir(stacks, lb))]

    def change() -> None:
        write_atomic(key_path, bytes(pyrage.passphrase.encrypt(text.encode(), secret)))
        write_atomic(pub_path, (public + "\n").encode())

    done = _reencrypt_all(stacks, labels, change)
    print(f"recovery key written to {shown(key_path, stacks)} (public key {public})")
    _report(done, stacks, "encrypted again, to the recovery key too")
    return 0
