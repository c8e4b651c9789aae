"""The secrets file format, fingerprints, passphrase sources and the edit file (no server)."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest

from builder.commands.secrets import from_toml, to_toml
from builder.secrets import fileformat as secrets_format
from builder.secrets import files as s


@pytest.fixture(autouse=True)
def cheap_kdf(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(secrets_format.LOG2N_ENV, "10")
    for name in ("BUNDLE_PASSPHRASE", "BUNDLE_PASSPHRASE_WEB1", "BUNDLE_PASSPHRASE_COMMAND"):
        monkeypatch.delenv(name, raising=False)
    s._CACHE.clear()
    s._TYPED.clear()


def sealed(values: dict[str, str], label: str = "web1", passphrase: str = "pw") -> bytes:
    return s.encrypt(s.Contents(b"k" * 32, values), label, passphrase)


def test_round_trip_keeps_values_and_key() -> None:
    values = {"a": "a-longer-value", "multi": "line one\nline two\n", "unicode": "pässwörd ✓"}
    data = sealed(values)
    got = s.decrypt(data, "web1", "pw", "f.enc")
    assert got.values == values and got.fingerprint_key == b"k" * 32
    text = data.decode()
    assert text.startswith("bundle-secrets 1\nfile: web1\nkdf: scrypt log2n=10 r=8 p=1 salt=")
    for value in values.values():
        assert value.encode() not in data and base64.b64encode(value.encode()) not in data


def test_two_encryptions_differ_but_both_open() -> None:
    a, b = sealed({"a": "x"}), sealed({"a": "x"})
    assert a != b  # fresh salt and nonce each time
    assert s.decrypt(a, "web1", "pw", "f").values == s.decrypt(b, "web1", "pw", "f").values


def test_length_is_padded() -> None:
    short, longer = sealed({"a": "x"}), sealed({"a": "x" * 300})
    assert len(short) == len(longer)


def test_wrong_passphrase_is_told_apart_from_tampering() -> None:
    data = sealed({"a": "x"})
    with pytest.raises(s.WrongPassphrase, match=r"f\.enc: wrong passphrase"):
        s.decrypt(data, "web1", "other", "f.enc")
    lines = data.decode().split("\n")
    body = list(lines[6])
    body[10] = "A" if body[10] != "A" else "B"
    lines[6] = "".join(body)
    with pytest.raises(s.SecretsError, match="changed after it was encrypted") as info:
        s.decrypt("\n".join(lines).encode(), "web1", "pw", "f.enc")
    assert not isinstance(info.value, s.WrongPassphrase)


@pytest.mark.parametrize(
    ("line", "new", "message"),
    [
        (1, "file: web2", "holds the secrets of 'web2'"),
        (2, None, "wrong passphrase"),  # a lower work factor derives another key
        (4, "cipher: aes-256-gcm nonce=AAAAAAAAAAAAAAAA", "changed after it was encrypted"),
        (0, "bundle-secrets 2", "not a bundle secrets file"),
    ],
)
def test_header_changes_are_detected(line: int, new: str | None, message: str) -> None:
    lines = sealed({"a": "x"}).decode().split("\n")
    lines[line] = new if new is not None else lines[line].replace("log2n=10", "log2n=11")
    with pytest.raises(s.SecretsError, match=message):
        s.decrypt("\n".join(lines).encode(), "web1", "pw", "f.enc")


def test_a_file_copied_to_another_host_is_refused() -> None:
    with pytest.raises(s.SecretsError, match="holds the secrets of 'vps2', not of 'web1'"):
        s.decrypt(sealed({"a": "x"}, label="vps2"), "web1", "pw", "f.enc")


def test_crlf_checkout_still_opens() -> None:
    data = sealed({"a": "x"}).replace(b"\n", b"\r\n")
    assert s.decrypt(data, "web1", "pw", "f").values == {"a": "x"}


def test_fingerprint_is_keyed_per_host_and_not_a_plain_hash() -> None:
    key = b"k" * 32
    fp = s.fingerprint(key, "web1", "pin", "1234")
    assert len(fp) == 64
    assert fp != hashlib.sha256(b"1234").hexdigest()
    assert fp == s.fingerprint(key, "web1", "pin", "1234")  # stable
    assert fp != s.fingerprint(key, "web2", "pin", "1234")  # per host
    assert fp != s.fingerprint(key, "web1", "pin2", "1234")  # per name
    assert fp != s.fingerprint(b"j" * 32, "web1", "pin", "1234")  # per file key


def project(tmp_path: Path) -> Path:
    stacks = tmp_path / "stacks"
    (stacks / "secrets").mkdir(parents=True)
    (stacks / "web1.toml").write_text("")
    return stacks


def test_open_with_env_and_fingerprints_survive_rekey(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stacks = project(tmp_path)
    monkeypatch.setenv("BUNDLE_PASSPHRASE", "first")
    f = s.open_file(stacks, "web1", create=True)
    assert f is not None and not f.exists
    f.values["db"] = "v"
    f.save()
    before = s.host_secrets(stacks, "web1").fingerprint("db")
    f.save(passphrase="second")
    s._CACHE.clear()
    monkeypatch.setenv("BUNDLE_PASSPHRASE", "second")
    assert s.host_secrets(stacks, "web1").fingerprint("db") == before
    s._CACHE.clear()
    monkeypatch.setenv("BUNDLE_PASSPHRASE", "first")
    with pytest.raises(s.WrongPassphrase, match=r"wrong passphrase \(from \$BUNDLE_PASSPHRASE\)"):
        s.open_file(stacks, "web1")


def test_per_file_env_wins_and_host_overrides_shared(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stacks = project(tmp_path)
    monkeypatch.setenv("BUNDLE_PASSPHRASE", "shared-pw")
    monkeypatch.setenv("BUNDLE_PASSPHRASE_WEB1", "host-pw")
    for label, value in (("shared", "from-shared"), ("web1", "from-host")):
        f = s.open_file(stacks, label, create=True)
        assert f is not None
        f.values["x"] = value
        f.values[f"only_{label}"] = "1"
        f.save()
    assert f.passphrase == "host-pw"
    s._CACHE.clear()
    seen = s.host_secrets(stacks, "web1")
    assert seen.value("x") == "from-host"
    assert seen.names() == ["only_shared", "only_web1", "x"]
    assert seen.source("only_shared") is not None and seen.source("only_shared").label == "shared"


def test_passphrase_command_from_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stacks = project(tmp_path)
    (stacks / "secrets/config.toml").write_text(
        'passphrase_command = "echo pw-for-{file}; echo second line"\n'
        '[files.shared]\npassphrase_command = "printf shared-pw"\n'
    )
    p = s.Passphrases(stacks)
    assert p.given("web1") == ("pw-for-web1", "`echo pw-for-web1; echo second line`")
    assert p.given("shared") == ("shared-pw", "`printf shared-pw`")
    (stacks / "secrets/config.toml").write_text('passphrase_command = "echo nope >&2; exit 3"\n')
    with pytest.raises(s.SecretsError, match=r"failed with exit 3: nope"):
        p.given("web1")


def test_no_passphrase_source_is_one_clear_error(tmp_path: Path) -> None:
    stacks = project(tmp_path)
    (stacks / "secrets/web1.enc").write_bytes(sealed({"a": "x"}))
    with pytest.raises(s.SecretsError) as info:
        s.open_file(stacks, "web1")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("stacks/secrets/web1.enc: no passphrase: set $BUNDLE_PASSPHRASE_WEB1")


@pytest.mark.parametrize(
    "value",
    [
        "plain",
        'quote " and backslash \\',
        "line one\nline two\n",
        "ends with quote'\nsecond",
        "has '''\ntriple",
        "tab\tand\rcarriage",
        "del\x7fand\x01ctl",
        "ünïcödé ✓",
    ],
)
def test_edit_file_round_trips(value: str) -> None:
    text = to_toml({"v": value}, "web1", "stacks/secrets/web1.enc")
    assert from_toml(text) == {"v": value}


def test_edit_file_refuses_bad_names_and_types() -> None:
    with pytest.raises(s.SecretsError, match="invalid secret name 'Bad'"):
        from_toml('Bad = "x"\n')
    with pytest.raises(s.SecretsError, match="must be a string"):
        from_toml("n = 3\n")
    with pytest.raises(s.SecretsError, match="not valid TOML"):
        from_toml("n = \n")


def test_the_recovery_script_in_the_docs_opens_a_file(tmp_path: Path) -> None:
    import subprocess
    import sys

    doc = (Path(__file__).resolve().parents[2] / "docs/secrets.md").read_text()
    script = doc.split("```python\n", 1)[1].split("```", 1)[0]
    (tmp_path / "recover.py").write_text(script)
    (tmp_path / "web1.enc").write_bytes(sealed({"db": "v4lue", "x": "y"}, passphrase="pass phrase"))
    done = subprocess.run(
        [sys.executable, str(tmp_path / "recover.py"), str(tmp_path / "web1.enc")],
        input="pass phrase\n",
        capture_output=True,
        text=True,
        start_new_session=True,  # no terminal: getpass reads stdin
        check=True,
    )
    assert json.loads(done.stdout) == {"db": "v4lue", "x": "y"}
