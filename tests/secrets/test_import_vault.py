"""`bundle secrets import-vault`: an Ansible Vault's variables become bundle secrets.

The vault files in vault_fixtures/ were made by the real `ansible-vault` (ansible-core 2.19),
with the password in vault_fixtures/vault-password.txt; vault_fixtures/README.md has the
commands and the plaintexts.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from builder.secrets.files import host_secrets, open_file

from .conftest import PASSPHRASE, SecretsProject, leaks

FIXTURES = Path(__file__).with_name("vault_fixtures")
PASSWORD_FILE = FIXTURES / "vault-password.txt"
HOST_VAULT = FIXTURES / "host_vars/web1/vault.yml"
TLS_KEY = "-----BEGIN KEY-----\nQUJDREVGR0hJSktMTU5PUA==\n-----END KEY-----\n"
IMPORTED = {
    "vault_db_password": "Pa55-db-9f3c1e7a-ONLY-IN-VAULT",
    "api_token": "tok_5b8d2a-ONLY-IN-VAULT",
    "pin": "4711",
    "tls_key": TLS_KEY,
    "enabled": "true",
}
SECRETS = {**IMPORTED, "smtp": "smtp-pw-ONLY-IN-VAULT", "redis": "inline-ONLY-IN-VAULT"}


@pytest.fixture(autouse=True)
def passphrase(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the bundle command uses, for reading its secrets files back in this process."""
    monkeypatch.setenv("BUNDLE_PASSPHRASE", PASSPHRASE)
    monkeypatch.setenv("BUNDLE_SECRETS_KDF_LOG2N", "10")


def assert_no_value_shown(p: SecretsProject) -> None:
    assert leaks([("command output", "".join(p.outputs).encode())], SECRETS) == []


def test_a_host_vault_becomes_that_hosts_secrets(sproject: SecretsProject) -> None:
    p = sproject
    r = p.ok(
        "secrets", "import-vault", str(HOST_VAULT), "--vault-password-file", str(PASSWORD_FILE)
    )
    assert r.stdout.splitlines() == [
        "skipped users: nested value (a list or mapping), not one string",
        "skipped smtp: nested value (a list or mapping), not one string",
        "skipped empty: empty value",
        "skipped has space: cannot be a secret name (1-63 of a-z 0-9 - _)",
        "skipped api_token: same secret name as API_Token",
        "web1: imported 5 secrets into stacks/secrets/web1.enc: api_token (from API_Token), "
        "enabled, pin (from _pin), tls_key, vault_db_password",
    ]
    secrets = host_secrets(p.stacks, "web1")
    assert {n: secrets.value(n) for n in secrets.names()} == IMPORTED
    assert_no_value_shown(p)
    listed = p.ok("secrets", "list", "web1").stdout.split()  # an ordinary secrets file
    assert listed[::2] == sorted(IMPORTED)

    # importing again replaces what is there and says so
    p.set("web1", "pin", "0000")
    r = p.ok(
        "secrets", "import-vault", str(HOST_VAULT), "--vault-password-file", str(PASSWORD_FILE)
    )
    assert r.stdout.splitlines()[-1].endswith(
        "; replaced api_token, enabled, pin, tls_key, vault_db_password"
    )
    assert host_secrets(p.stacks, "web1").value("pin") == "4711"


def test_group_vars_all_goes_to_shared_with_the_password_file_from_the_environment(
    sproject: SecretsProject,
) -> None:
    p = sproject
    p.env["ANSIBLE_VAULT_PASSWORD_FILE"] = str(PASSWORD_FILE)
    r = p.ok("secrets", "import-vault", str(FIXTURES / "group_vars/all/vault.yml"))
    assert r.stdout == "shared: imported 1 secret into stacks/secrets/shared.enc: smtp_password\n"
    shared = open_file(p.stacks, "shared")
    assert shared is not None and shared.values == {"smtp_password": "smtp-pw-ONLY-IN-VAULT"}


def test_vault_values_inside_plain_yaml_are_read_too(sproject: SecretsProject) -> None:
    p = sproject
    script = p.root / "password.sh"  # an executable password file is run, as ansible does
    script.write_text(f"#!/bin/sh\ncat {PASSWORD_FILE}\n")
    script.chmod(0o700)
    r = p.ok(
        "secrets", "import-vault", str(FIXTURES / "inline.yml"), "--label", "web1",
        "--vault-password-file", str(script),
    )  # fmt: skip
    assert r.stdout == (
        "web1: imported 2 secrets into stacks/secrets/web1.enc: plain_setting, redis_password\n"
    )
    assert host_secrets(p.stacks, "web1").value("redis_password") == "inline-ONLY-IN-VAULT"


def test_what_it_refuses_is_one_line_and_writes_nothing(
    sproject: SecretsProject, tmp_path: Path
) -> None:
    p = sproject
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("not-the-password\n")
    damaged = tmp_path / "host_vars/web1/vault.yml"
    damaged.parent.mkdir(parents=True)
    lines = HOST_VAULT.read_text().splitlines()
    # one digit of the ciphertext one higher: the hex pair "3N" (an ASCII digit) becomes "3N+1"
    at = next(i for i in range(0, 80, 2) if lines[-2][i : i + 2] in {f"3{d}" for d in range(9)})
    lines[-2] = lines[-2][: at + 1] + str(int(lines[-2][at + 1]) + 1) + lines[-2][at + 2 :]
    damaged.write_text("\n".join(lines) + "\n")
    plain = tmp_path / "plain.yml"
    plain.write_text("db_password: x\n")
    elsewhere = tmp_path / "vault.yml"
    shutil.copy(HOST_VAULT, elsewhere)
    pw = ["--vault-password-file", str(PASSWORD_FILE)]
    cases = {
        (str(HOST_VAULT), "--vault-password-file", str(wrong)): f"{HOST_VAULT}: wrong vault "
        "password (or the file was changed); nothing was imported",
        (str(damaged), *pw): f"{damaged}: wrong vault password (or the file was changed); "
        "nothing was imported",
        (str(plain), "--label", "web1", *pw): f"{plain}: not an Ansible Vault file (no "
        "$ANSIBLE_VAULT header, no !vault value); nothing was imported",
        (str(elsewhere), *pw): f"{elsewhere}: which secrets file should it go to? give --label "
        f"HOST (a stack in {p.stacks}) or --label shared",
        (str(HOST_VAULT), "--label", "web9", *pw): "--label web9: stacks/web9.toml does not "
        "exist; secrets belong to a host (or to `shared`, seen by every host)",
        (str(HOST_VAULT),): "no vault password: give --vault-password-file FILE, set "
        "$ANSIBLE_VAULT_PASSWORD_FILE, or run on a terminal to be asked",
        (str(tmp_path / "missing.yml"), *pw): f"{tmp_path}/missing.yml: no such file (an "
        "Ansible Vault file to import)",
    }
    for args, message in cases.items():
        r = p.run("secrets", "import-vault", *args)
        assert (r.returncode, r.stderr) == (2, f"error: {message}\n"), args
    assert not (p.stacks / "secrets").exists() or os.listdir(p.stacks / "secrets") == []
    assert_no_value_shown(p)
