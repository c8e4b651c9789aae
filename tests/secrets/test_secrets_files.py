"""Secrets files are read like every other file of the stack tree (builder/stack/stackfiles.py).

A symlink out of stacks/ would let a build decrypt and use a file nobody reviewed in the
repository (and a folder or a dangling link in place of a file was skipped, as if the host had
no secrets). Each is refused in one line, exit 2, and nothing is built.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .conftest import SecretsProject


def built(p: SecretsProject) -> list[Path]:
    folder = p.bundles / "web1"
    return sorted(folder.iterdir()) if folder.exists() else []


def refused(p: SecretsProject, message: str, **env: str | None) -> None:
    r = p.run("build", "web1", env=env)
    assert r.returncode == 2, r
    assert len(r.stderr.splitlines()) == 1, r.stderr
    assert message in r.stderr, r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    assert built(p) == []


def test_a_secrets_file_linked_from_outside_the_stacks_is_refused(
    sproject: SecretsProject, tmp_path: Path
) -> None:
    p = sproject
    p.set_all()
    outside = tmp_path / "elsewhere.enc"
    (p.stacks / "secrets/web1.enc").rename(outside)
    (p.stacks / "secrets/web1.enc").symlink_to(outside)
    refused(
        p,
        f"stacks/secrets/web1.enc: is a symlink to {outside}, outside stacks/: "
        "copy the file in instead",
    )


def test_a_secrets_file_linked_within_the_stacks_is_read(sproject: SecretsProject) -> None:
    p = sproject
    p.set_all()
    kept = p.stacks / "vault/shared.enc"
    kept.parent.mkdir()
    (p.stacks / "secrets/shared.enc").rename(kept)
    (p.stacks / "secrets/shared.enc").symlink_to("../vault/shared.enc")
    p.ok("build", "web1")
    assert "tls_key" in p.manifest()["secrets"], p.manifest()["secrets"]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda f: f.mkdir(), "stacks/secrets/shared.enc: is a folder, not a file"),
        (lambda f: f.symlink_to("gone.enc"), "stacks/secrets/shared.enc: does not exist"),
    ],
    ids=["folder", "dangling-link"],
)
def test_something_else_in_place_of_a_secrets_file_is_refused_not_skipped(
    sproject: SecretsProject, make, message: str
) -> None:
    p = sproject
    p.set_all()
    (p.stacks / "secrets/shared.enc").unlink()
    make(p.stacks / "secrets/shared.enc")
    refused(p, message)


def test_a_passphrase_config_linked_from_outside_is_refused(
    sproject: SecretsProject, tmp_path: Path
) -> None:
    p = sproject
    p.set_all()
    outside = tmp_path / "config.toml"
    outside.write_text('passphrase_command = "echo correct horse battery staple"\n')
    os.symlink(outside, p.stacks / "secrets/config.toml")
    refused(
        p,
        f"stacks/secrets/config.toml: is a symlink to {outside}, outside stacks/",
        BUNDLE_PASSPHRASE=None,
    )


def test_a_passphrase_config_that_is_not_utf8_is_refused_with_its_line(
    sproject: SecretsProject,
) -> None:
    p = sproject
    p.set_all()
    (p.stacks / "secrets/config.toml").write_bytes(b'# ok\npassphrase_command = "echo \xff"\n')
    refused(p, "stacks/secrets/config.toml:2: byte 0xff is not UTF-8 text", BUNDLE_PASSPHRASE=None)
