"""The server's age decryptor (activate/agecrypt.py) against files the real `age` command writes.

Keys come from `age-keygen` and `ssh-keygen`; every file is made by `age -r` / `age -R`. A file
opens to exactly what went in; a changed, cut or foreign file is refused with AgeError.
"""

from __future__ import annotations

import base64
import struct
import subprocess
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from activate.agecrypt import AgeError, Identity, decrypt, ssh_ed25519_identity, x25519_identity

CHUNK = 64 * 1024


class Keys:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        subprocess.run(
            ["age-keygen", "-o", str(folder / "id.txt")], check=True, capture_output=True
        )
        text = (folder / "id.txt").read_text()
        self.age_secret = next(line for line in text.splitlines() if line.startswith("AGE-"))
        self.age_public = subprocess.run(
            ["age-keygen", "-y", str(folder / "id.txt")], check=True, capture_output=True, text=True
        ).stdout.strip()
        self.host_key = self._ssh_key("ssh_host_ed25519_key")
        self.other_key = self._ssh_key("other_ed25519_key")

    def _ssh_key(self, name: str) -> Path:
        path = self.folder / name
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(path)], check=True
        )
        return path

    def host(self) -> Identity:
        return ssh_ed25519_identity(self.host_key.read_text())

    def age(self, value: bytes, *recipients: str, armor: bool = False) -> bytes:
        args = ["age", *(["-a"] if armor else []), *recipients]
        return subprocess.run(args, input=value, check=True, capture_output=True).stdout


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return Keys(tmp_path_factory.mktemp("agekeys"))


def to_host(keys: Keys) -> tuple[str, str]:
    return ("-R", f"{keys.host_key}.pub")


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"s3cret",
        b"\x00\xff" * 100,
        bytes(CHUNK),
        bytes(range(256)) * 256 + b"x",
        bytes(512000),
    ],
    ids=["empty", "short", "binary", "one-full-chunk", "chunk-and-a-byte", "largest"],
)
def test_a_value_encrypted_to_the_host_key_opens_exactly(keys: Keys, value: bytes) -> None:
    assert decrypt(keys.age(value, *to_host(keys)), [keys.host()]) == value


def test_an_age_key_file_opens_what_age_r_wrote(keys: Keys) -> None:
    data = keys.age(b"db-Pa55", "-r", keys.age_public)
    assert decrypt(data, [x25519_identity(keys.age_secret)]) == b"db-Pa55"


def test_each_recipient_of_a_multi_recipient_file_opens_it(keys: Keys) -> None:
    other_pub = f"{keys.other_key}.pub"
    data = keys.age(b"shared", "-r", keys.age_public, "-R", other_pub, *to_host(keys))
    assert decrypt(data, [keys.host()]) == b"shared"
    assert decrypt(data, [x25519_identity(keys.age_secret)]) == b"shared"
    assert decrypt(data, [ssh_ed25519_identity(keys.other_key.read_text())]) == b"shared"


def test_an_armored_file_opens(keys: Keys) -> None:
    data = keys.age(b"armored value\n" * 20, *to_host(keys), armor=True)
    assert data.startswith(b"-----BEGIN AGE ENCRYPTED FILE-----")
    assert decrypt(data, [keys.host()]) == b"armored value\n" * 20


def test_a_file_for_another_key_names_the_host_key(keys: Keys) -> None:
    data = keys.age(b"x", "-R", f"{keys.other_key}.pub", "-r", keys.age_public)
    with pytest.raises(AgeError) as e:
        decrypt(data, [keys.host()])
    public = (keys.host_key.parent / "ssh_host_ed25519_key.pub").read_text().split()[1]
    assert str(e.value) == f"not encrypted to this host's key ssh-ed25519 {public}"


def test_an_unknown_stanza_is_skipped_but_counts_in_the_header_mac(keys: Keys) -> None:
    data = keys.age(b"value", *to_host(keys))
    intro, rest = data.split(b"\n", 1)
    with pytest.raises(AgeError, match="header MAC mismatch"):
        decrypt(intro + b"\n-> future-type arg\nAAAA\n" + rest, [keys.host()])


def test_a_changed_mac_or_payload_is_refused(keys: Keys) -> None:
    data = bytearray(keys.age(b"A" * (CHUNK + 10), *to_host(keys)))
    mac_at = data.index(b"\n--- ") + 5
    changed = bytearray(data)
    changed[mac_at] = ord("A") if changed[mac_at] != ord("A") else ord("B")
    with pytest.raises(AgeError, match="header MAC mismatch"):
        decrypt(bytes(changed), [keys.host()])
    for at in (len(data) - 1, len(data) - CHUNK // 2, data.index(b"\n", mac_at) + 30):
        changed = bytearray(data)
        changed[at] ^= 1
        with pytest.raises(AgeError, match="payload was changed"):
            decrypt(bytes(changed), [keys.host()])


def test_a_header_with_too_many_stanzas_is_refused_before_any_key_work(keys: Keys) -> None:
    data = keys.age(b"value", *to_host(keys))
    intro, rest = data.split(b"\n", 1)
    stanza = rest.split(b"\n--- ", 1)[0] + b"\n"
    with pytest.raises(AgeError, match="more than 256 recipient stanzas"):
        decrypt(intro + b"\n" + stanza * 257 + rest, [keys.host()])


def test_a_file_cut_at_a_chunk_boundary_is_refused(keys: Keys) -> None:
    data = keys.age(bytes(2 * CHUNK), *to_host(keys))
    with pytest.raises(AgeError, match="cut short"):
        decrypt(data[: -(CHUNK + 16)], [keys.host()])


def test_a_file_with_an_empty_chunk_after_a_full_one_is_refused(keys: Keys) -> None:
    data = keys.age(bytes(CHUNK), *to_host(keys))
    with pytest.raises(AgeError):
        decrypt(data + bytes(16), [keys.host()])


def test_a_value_larger_than_a_secret_is_refused(keys: Keys) -> None:
    data = keys.age(bytes(512001), *to_host(keys))
    with pytest.raises(AgeError, match="more than 512000"):
        decrypt(data, [keys.host()])


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(value=st.binary(max_size=3000) | st.binary(min_size=CHUNK - 20, max_size=CHUNK + 20))
def test_any_value_round_trips_through_the_age_command(keys: Keys, value: bytes) -> None:
    data = keys.age(value, *to_host(keys), "-r", keys.age_public)
    assert decrypt(data, [keys.host()]) == value


@pytest.fixture(scope="module")
def sample(keys: Keys) -> bytes:
    return keys.age(b"the value " * 300, *to_host(keys))


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(where=st.floats(0, 1, exclude_max=True), bit=st.integers(0, 7), cut=st.booleans())
def test_any_changed_bit_or_cut_is_an_age_error(
    keys: Keys, sample: bytes, where: float, bit: int, cut: bool
) -> None:
    at = int(where * len(sample))
    if cut:
        data = sample[:at]
    else:
        changed = bytearray(sample)
        changed[at] ^= 1 << bit
        data = bytes(changed)
    with pytest.raises(AgeError) as e:
        decrypt(data, [keys.host()])
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("AGE-SECRET-KEY-1QQQQ", "not an age secret key"),
        ("age1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq", "not an age secret key"),
        ("", "not an age secret key"),
    ],
)
def test_a_bad_age_secret_key_is_refused(text: str, message: str) -> None:
    with pytest.raises(AgeError, match=message):
        x25519_identity(text)


def test_a_typo_in_an_age_secret_key_is_a_checksum_error(keys: Keys) -> None:
    secret = keys.age_secret
    typo = secret[:30] + ("Q" if secret[30] != "Q" else "P") + secret[31:]
    with pytest.raises(AgeError, match="bad checksum"):
        x25519_identity(typo)


def test_ssh_keys_it_cannot_use_are_refused_in_one_line(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "pw", "-f", str(locked)], check=True)
    rsa = tmp_path / "rsa"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-N", "", "-f", str(rsa)], check=True
    )
    cases = {
        locked.read_text(): "protected by a passphrase",
        rsa.read_text(): "'ssh-rsa', not ssh-ed25519",
        "ssh-ed25519 AAAA": "not an OpenSSH private key",
        locked.read_text()[:200]: "cut short",
    }
    for text, message in cases.items():
        with pytest.raises(AgeError, match=message) as e:
            ssh_ed25519_identity(text)
        assert "\n" not in str(e.value)


def openssh_text(seed: bytes, public: bytes) -> str:
    """An unencrypted OpenSSH private key file holding any 32-byte public half."""

    def string(b: bytes) -> bytes:
        return struct.pack(">I", len(b)) + b

    pub_blob = string(b"ssh-ed25519") + string(public)
    private = struct.pack(">II", 7, 7) + string(b"ssh-ed25519") + string(public)
    private += string(seed + public) + string(b"") + bytes(range(1, 8))
    blob = b"openssh-key-v1\0" + string(b"none") * 2 + string(b"") + struct.pack(">I", 1)
    blob += string(pub_blob) + string(private)
    body = base64.b64encode(blob).decode()
    lines = [body[i : i + 70] for i in range(0, len(body), 70)]
    return "\n".join(
        ["-----BEGIN OPENSSH PRIVATE KEY-----", *lines, "-----END OPENSSH PRIVATE KEY-----"]
    )


@pytest.mark.parametrize(
    ("public", "message"),
    [
        ((1).to_bytes(32, "little"), "not a readable OpenSSH ed25519 private key"),
        ((2**255 - 1).to_bytes(32, "little"), "not a readable OpenSSH ed25519 private key"),
        (bytes(range(32)), "public half does not match its private half"),
    ],
    ids=["identity-point", "y-out-of-range", "another-public-key"],
)
def test_a_hostile_ed25519_key_file_is_an_age_error(public: bytes, message: str) -> None:
    with pytest.raises(AgeError, match=message):
        ssh_ed25519_identity(openssh_text(bytes(32), public))


def test_the_identity_never_shows_its_secret(keys: Keys) -> None:
    identity = keys.host()
    assert identity.scalar.hex() not in repr(identity)
    assert repr(identity).startswith("Identity('ssh-ed25519 AAAA")


def test_opening_a_500_kb_secret_is_quick(keys: Keys, capsys: pytest.CaptureFixture[str]) -> None:
    data = keys.age(bytes(range(250)) * 2000, *to_host(keys))
    started = time.monotonic()
    assert decrypt(data, [keys.host()]) == bytes(range(250)) * 2000
    with capsys.disabled():
        print(f"\n500 KB age file opened in {time.monotonic() - started:.3f} s")
