"""Whether every age file of a label is encrypted to exactly the recipients the stacks list.

The header tells it without a key: an SSH stanza names its recipient by tag, X25519 stanzas
are counted (they carry no tag), and each listed age key this machine holds must open the file. A missing recipient is the quiet loss sops users meet: a key
added to the list whose files were never encrypted to it.
"""

from __future__ import annotations

from pathlib import Path

import pyrage

from builder.secrets import identities
from builder.secrets.agefmt import coverage
from builder.secrets.agestore import SUFFIX, label_dir, read_label
from builder.secrets.recipients import SHARED, label_recipients
from builder.stack import stackfiles


def check_label(stacks_dir: Path, label: str) -> list[str]:
    """One line per file that does not match its label's recipients; [] when all do."""
    files = read_label(stacks_dir, label)
    if not files:
        return []
    recipients = label_recipients(stacks_dir, label)
    folder = label_dir(stacks_dir, label)
    fix = f"bundle secrets recipients apply {label}"
    if not recipients:
        where = stackfiles.shown(folder, stacks_dir)
        stack = "any host's stack" if label == SHARED else f"stacks/{label}.toml"
        return [f"{where}/: no recipients are listed for it ([secrets] recipients in {stack})"]
    listed = {r.text for r in recipients}
    mine = [i for i in identities.own_identities() if isinstance(i, pyrage.x25519.Identity)]
    mine = [i for i in mine if str(i.to_public()) in listed]
    out = []
    for name, data in sorted(files.items()):
        where = stackfiles.shown(folder / f"{name}{SUFFIX}", stacks_dir)
        gaps = coverage(data, recipients, where)
        gaps += [
            f"is not encrypted to {i.to_public()} (this machine holds that key)"
            for i in mine
            if not _opens(data, i)
        ]
        out += [f"{where}: {gap}; encrypt it again: {fix}" for gap in gaps]
    return out


def _opens(data: bytes, identity: object) -> bool:
    """X25519 stanzas name no recipient: the keys this machine holds are tried for real."""
    try:
        pyrage.decrypt(data, [identity])
    except pyrage.DecryptError:
        return False
    return True


def age_labels(stacks_dir: Path) -> list[str]:
    base = stacks_dir / "secrets"
    if not base.is_dir():
        return []
    return sorted(p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))
