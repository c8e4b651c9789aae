"""Secrets as age files: the real `age` CLI reads what bundle writes and the other way round,
recipients are added and removed with their files, a check catches a file a recipient cannot
open, and `.enc` files migrate without losing a value."""

from __future__ import annotations

import hashlib
import subprocess
import time
from pathlib import Path

from .conftest import VALUES, SecretsProject, files_under, leaks


def age(*args: str, input: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["age", *args], input=input, capture_output=True, timeout=60, check=False)


def keygen(path: Path) -> str:
    """A new age identity file at path; its public key."""
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["age-keygen", "-o", str(path)], capture_output=True, check=True, timeout=60)
    return subprocess.run(
        ["age-keygen", "-y", str(path)], capture_output=True, text=True, check=True, timeout=60
    ).stdout.strip()


def ssh_key(path: Path, comment: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        timeout=60,
    )
    return path.with_suffix(".pub").read_text().strip()


def opened(path: Path, identity: Path) -> str:
    done = age("-d", "-i", str(identity), str(path))
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode()


def admin(p: SecretsProject) -> str:
    """The deploying machine's own identity (~/.config/bundle/age/keys.txt), as a recipient."""
    key = keygen(p.root / ".config/bundle/age/keys.txt")
    p.ok("secrets", "recipients", "add", "web1", key)
    return key


def test_age_files_interoperate_with_the_age_cli(sproject: SecretsProject) -> None:
    p = sproject
    admin(p)
    alice = ssh_key(p.root / "alice/id_ed25519", "alice@laptop")
    r = p.ok("secrets", "recipients", "add", "web1", alice)
    assert "alice@laptop added to [secrets] recipients in stacks/web1.toml" in r.stdout
    assert 'recipients = [\n  "age1' in (p.stacks / "web1.toml").read_text()
    p.set_all()
    folder = p.stacks / "secrets/web1"
    assert sorted(f.name for f in folder.iterdir()) == [
        "api_token.age",
        "db_password.age",
        "pin.age",
    ]
    assert not (p.stacks / "secrets/web1.enc").exists()
    keys = p.root / ".config/bundle/age/keys.txt"
    # bundle's files open with the age CLI, with an age identity or an SSH key
    assert opened(folder / "db_password.age", keys) == VALUES["db_password"]
    assert opened(folder / "pin.age", p.root / "alice/id_ed25519") == VALUES["pin"]
    assert opened(p.stacks / "secrets/shared/tls_key.age", keys) == VALUES["tls_key"]

    # a file the age CLI wrote is a secret: to the same recipients, under a new name
    listed = p.ok("secrets", "recipients", "list", "web1").stdout.split("\n")
    outside = age(
        *[a for key in listed if key for a in ("-r", key)],
        "-o",
        str(folder / "api_token.age"),
        input=b"from-the-age-cli-ONLY-IN-SECRETS",
    )
    assert outside.returncode == 0, outside.stderr.decode()
    p.ok("secrets", "check")
    p.ok("build", "web1")
    m = p.manifest()
    data = (folder / "api_token.age").read_bytes()
    assert m["secrets"]["api_token"]["fingerprint"] == hashlib.sha256(data).hexdigest()
    assert (
        m["secrets"]["api_token"]["podman_secret"]
        == f"api_token-{hashlib.sha256(data).hexdigest()[:12]}"
    )

    # deployer-decrypts: the push reads each value with this machine's identity
    server = p.root / "server"
    server.mkdir()
    pushed = p.json("push", "web1", "--target", str(server))
    assert pushed["secrets_sent"] == ["api_token", "db_password", "pin", "tls_key"]
    stored = server / "var/lib/bundle/secrets/api_token" / m["secrets"]["api_token"]["fingerprint"]
    assert stored.read_text() == "from-the-age-cli-ONLY-IN-SECRETS"
    values = {**VALUES, "outside": "from-the-age-cli-ONLY-IN-SECRETS"}
    local = [(str(f), d) for f, d in files_under(p.bundles)]
    local.append(("command output", "".join(p.outputs).encode()))
    assert leaks(local, values) == []


def test_an_ssh_recipient_file_opens_with_the_ssh_identity(sproject: SecretsProject) -> None:
    p = sproject
    me = ssh_key(p.root / ".ssh/id_ed25519", "me@deployer")  # the third place bundle looks
    p.ok("secrets", "recipients", "add", "web1", me)
    folder = p.stacks / "secrets/web1"
    folder.mkdir(parents=True)
    for name in ("db_password", "api_token", "pin"):
        made = age(
            "-R",
            str(p.root / ".ssh/id_ed25519.pub"),
            "-o",
            str(folder / f"{name}.age"),
            input=VALUES[name].encode(),
        )
        assert made.returncode == 0, made.stderr.decode()
    p.write(
        "web1.toml",
        (p.stacks / "web1.toml")
        .read_text()
        .replace('{ name = "tls_key", file = "/run/secrets/tls.key" },', ""),
    )
    p.ok("build", "web1")
    server = p.root / "server"
    server.mkdir()
    p.json("push", "web1", "--target", str(server))
    m = p.manifest()
    for name in ("db_password", "api_token", "pin"):
        fp = m["secrets"][name]["fingerprint"]
        assert (server / f"var/lib/bundle/secrets/{name}/{fp}").read_text() == VALUES[name]


def test_recipients_add_remove_and_check(sproject: SecretsProject) -> None:
    p = sproject
    admin(p)
    keys = p.root / ".config/bundle/age/keys.txt"
    p.set("web1", "db_password", VALUES["db_password"])
    p.set("web1", "pin", VALUES["pin"])
    bob_key = p.root / "bob.txt"
    bob = keygen(bob_key)
    folder = p.stacks / "secrets/web1"
    before = (folder / "pin.age").read_bytes()
    r = p.ok("secrets", "recipients", "add", "web1", bob)
    assert r.stdout.splitlines()[-1] == "web1: 2 files in stacks/secrets/web1/ encrypted again"
    assert opened(folder / "pin.age", bob_key) == VALUES["pin"]
    assert (folder / "pin.age").read_bytes() != before  # a new version: units restart on switch
    p.ok("secrets", "check", "web1")

    # a file written to one recipient only: named in one line, and the build refuses too
    only_me = age(
        "-r", keygen(p.root / "other.txt"), "-r", bob, "-o", str(folder / "pin.age"), input=b"1234"
    )
    assert only_me.returncode == 0
    r = p.run("secrets", "check", "web1")
    assert r.returncode == 2
    mine = p.ok("secrets", "recipients", "list", "web1").stdout.split()[0]
    assert r.stderr.strip() == (
        f"error: stacks/secrets/web1/pin.age: is not encrypted to {mine} (this machine holds "
        "that key); encrypt it again: bundle secrets recipients apply web1"
    )
    (folder / "pin.age").write_bytes(age("-r", bob, input=b"1234").stdout)
    r = p.run("build", "web1")
    assert (
        r.returncode == 2
        and "stacks/secrets/web1/pin.age: is encrypted to 1 age keys, and 2 are listed" in r.stderr
    )
    # an SSH recipient missing is named by its key
    alice = ssh_key(p.root / "alice/id_ed25519", "alice@laptop")
    (folder / "pin.age").write_bytes(
        age("-r", bob, "-r", keygen(p.root / "x.txt"), input=b"1234").stdout
    )
    text = (p.stacks / "web1.toml").read_text()
    p.write(
        "web1.toml",
        text.replace("recipients = [", f"recipients = [\n  {alice!r},".replace("'", '"')),
    )
    r = p.run("secrets", "check", "web1")
    assert r.returncode == 2
    assert "pin.age: is not encrypted to ssh-ed25519 …" in r.stderr and "alice@laptop" in r.stderr
    p.write("web1.toml", text)

    # removing a recipient: its key no longer opens the files (the value is read first)
    (folder / "pin.age").write_bytes(
        age(
            "-r",
            bob,
            "-r",
            p.ok("secrets", "recipients", "list", "web1").stdout.split()[0],
            input=b"1234",
        ).stdout
    )
    p.ok("secrets", "recipients", "remove", "web1", bob)
    assert age("-d", "-i", str(bob_key), str(folder / "pin.age")).returncode != 0
    assert opened(folder / "pin.age", keys) == "1234"
    p.ok("secrets", "check")
    r = p.run("secrets", "recipients", "add", "web1", "ssh-dss AAAAB3")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "is not a recipient" in r.stderr


def test_migrate_keeps_every_value(sproject: SecretsProject) -> None:
    p = sproject
    p.set_all()  # the passphrase format, as before recipients
    assert (p.stacks / "secrets/web1.enc").is_file()
    p.ok("build", "web1")
    old = p.manifest()["secrets"]
    keys = p.root / ".config/bundle/age/keys.txt"
    me = keygen(keys)
    text = (p.stacks / "web1.toml").read_text()
    p.write("web1.toml", text + f'\n[secrets]\nrecipients = ["{me}"]\n')
    p.ok("build", "web1")  # a label with only its .enc file builds as before
    r = p.ok("secrets", "migrate")
    assert r.stdout.splitlines() == [
        "shared: 1 secret moved from stacks/secrets/shared.enc to stacks/secrets/shared/, each checked by decrypting it",
        "web1: 3 secrets moved from stacks/secrets/web1.enc to stacks/secrets/web1/, each checked by decrypting it",
    ]
    assert not (p.stacks / "secrets/web1.enc").exists()
    for name in ("db_password", "api_token", "pin"):
        assert opened(p.stacks / f"secrets/web1/{name}.age", keys) == VALUES[name]
    assert opened(p.stacks / "secrets/shared/tls_key.age", keys) == VALUES["tls_key"]
    p.ok("build", "web1")
    new = p.manifest()["secrets"]
    assert all(new[n]["fingerprint"] != old[n]["fingerprint"] for n in old)  # new versions

    # interrupted after the age files were written: both exist, the build says how to finish
    p.write("other.toml", '[host]\nname = "other"\naddress = "o.example.org"\n')
    p.ok("secrets", "set", "other", "token", input="old-ONLY-IN-SECRETS")
    assert (p.stacks / "secrets/other.enc").is_file()  # other lists no recipients: .enc
    p.write(
        "other.toml",
        f'[host]\nname = "other"\naddress = "o.example.org"\n[secrets]\nrecipients = ["{me}"]\n',
    )
    (p.stacks / "secrets/other").mkdir()
    (p.stacks / "secrets/other/token.age").write_bytes(
        age("-r", me, input=b"old-ONLY-IN-SECRETS").stdout
    )
    r = p.run("secrets", "list", "other")
    assert r.returncode == 2 and r.stderr.strip() == (
        "error: stacks/secrets/other.enc and stacks/secrets/other/ both exist: a migration was "
        "interrupted; finish it: bundle secrets migrate other"
    )
    p.ok("secrets", "migrate", "other")
    assert opened(p.stacks / "secrets/other/token.age", keys) == "old-ONLY-IN-SECRETS"
    assert not (p.stacks / "secrets/other.enc").exists()


def test_no_identity_and_the_recovery_key(sproject: SecretsProject) -> None:
    p = sproject
    me = admin(p)
    p.set_all()
    p.ok("build", "web1")  # needs no identity: versions are hashes of the files
    p.env["BUNDLE_PASSPHRASE_RECOVERY"] = "recovery words ONLY-IN-SECRETS"
    r = p.ok("secrets", "recovery-key")
    assert "recovery key written to stacks/secrets/recovery.key.age" in r.stdout
    assert (
        "web1: 3 files in stacks/secrets/web1/ encrypted again, to the recovery key too" in r.stdout
    )
    assert me in p.ok("secrets", "recipients", "list", "web1").stdout
    # the age CLI opens a secret with the recovery key, asking its passphrase on a terminal
    age_cli = subprocess.Popen(
        [
            "script",
            "-qec",
            "age -d -i stacks/secrets/recovery.key.age stacks/secrets/web1/pin.age",
            "/dev/null",
        ],
        cwd=p.root,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    time.sleep(1)  # typed after the prompt, as a person would
    out, _ = age_cli.communicate(b"recovery words ONLY-IN-SECRETS\r", timeout=60)
    assert out.endswith(VALUES["pin"].encode()), out
    (p.root / ".config/bundle/age/keys.txt").unlink()
    server = p.root / "server"
    server.mkdir()
    p.ok("build", "web1")
    without = p.run(
        "push",
        "web1",
        "--target",
        str(server),
        env={"BUNDLE_PASSPHRASE_RECOVERY": None, "BUNDLE_PASSPHRASE": None},
    )
    assert without.returncode == 2
    assert without.stderr.count("\n") == 1 and "recovery key" in without.stderr
    pushed = p.json("push", "web1", "--target", str(server))
    assert pushed["secrets_sent"] == ["api_token", "db_password", "pin", "tls_key"]
    m = p.manifest()
    fp = m["secrets"]["pin"]["fingerprint"]
    assert (server / f"var/lib/bundle/secrets/pin/{fp}").read_text() == VALUES["pin"]


def test_edit_and_a_passphrase_protected_ssh_key(sproject: SecretsProject) -> None:
    p = sproject
    locked = p.root / ".ssh/id_ed25519"
    locked.parent.mkdir(parents=True)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "a passphrase", "-f", str(locked)],
        check=True,
        timeout=60,
    )
    admin(p)  # keys.txt comes before ~/.ssh/id_ed25519, which bundle passes over
    p.set("web1", "pin", VALUES["pin"])
    p.set("web1", "api_token", VALUES["api_token"])
    before = (p.stacks / "secrets/web1/api_token.age").read_bytes()
    editor = p.root / "editor.sh"
    editor.write_text('#!/bin/sh\nsed -i \'s/^pin = .*/pin = "4321"/\' "$1"\n')
    editor.chmod(0o755)
    r = p.run("secrets", "edit", "web1", env={"EDITOR": str(editor)})
    assert r.returncode == 0, r.stderr
    assert r.stdout == "web1: saved stacks/secrets/web1/: 0 added, 1 changed (pin), 0 removed\n"
    keys = p.root / ".config/bundle/age/keys.txt"
    assert opened(p.stacks / "secrets/web1/pin.age", keys) == "4321"
    assert (p.stacks / "secrets/web1/api_token.age").read_bytes() == before  # untouched
    pin = (p.stacks / "secrets/web1/pin.age").read_bytes()
    same = p.ok("secrets", "set", "web1", "pin", input="4321").stdout
    assert same == "web1: pin already has that value; stacks/secrets/web1/ was not written\n"
    assert (p.stacks / "secrets/web1/pin.age").read_bytes() == pin  # no new version
    keys.unlink()
    r = p.run("secrets", "edit", "web1", env={"EDITOR": str(editor)})
    assert r.returncode == 2
    assert r.stderr == (
        "error: stacks/secrets/web1/api_token.age: no identity here can decrypt it (tried "
        "~/.config/bundle/age/keys.txt, ~/.ssh/id_ed25519 and the recovery key; "
        "~/.ssh/id_ed25519 skipped: it has a passphrase); set $BUNDLE_AGE_IDENTITY to an "
        "identity file of one of its recipients\n"
    )


def test_recipients_are_not_guessed_into_an_unusual_layout(sproject: SecretsProject) -> None:
    p = sproject
    me = keygen(p.root / ".config/bundle/age/keys.txt")
    text = (p.stacks / "web1.toml").read_text()
    p.write("web1.toml", f'secrets = {{ recipients = ["{me}"] }}\n' + text)
    p.set("web1", "pin", VALUES["pin"])
    r = p.run("secrets", "recipients", "add", "web1", keygen(p.root / "bob.txt"))
    assert r.returncode == 2
    assert r.stderr == (
        "error: stacks/web1.toml: cannot edit its [secrets] recipients in place; write the list "
        "by hand, then run: bundle secrets recipients apply web1\n"
    )
    assert (p.stacks / "web1.toml").read_text().startswith("secrets = {")
