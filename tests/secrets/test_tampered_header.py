"""A secrets file whose header was changed to demand more than bundle writes.

scrypt's memory is 128 * r * 2^log2n bytes: a header edited to `log2n=20 r=32 p=16` would
make every `bundle build` allocate 4 GiB and work sixteen times over before the passphrase
is even checked. Only the header lines bundle writes are read; anything else is refused in
one line before any key derivation, quickly and within a small address space.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.secrets.conftest import PASSPHRASE, SecretsProject

ADDRESS_SPACE = 1536 * 1024 * 1024  # far below what the tampered work factors would take


def _small_address_space() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def run_limited(p: SecretsProject, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    env = {
        "PATH": "/usr/bin:/bin",
        "NO_COLOR": "1",
        "HOME": str(p.root),
        "BUNDLE_PASSPHRASE": PASSPHRASE,
    }
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "builder.cli", *args],
        cwd=p.root,
        capture_output=True,
        text=True,
        input="",
        env=env,
        start_new_session=True,
        preexec_fn=_small_address_space,
        timeout=600,
        check=False,
    )
    return done, time.monotonic() - start


def tamper(path: Path, index: int, change: str) -> None:
    lines = path.read_text().split("\n")
    lines[index] = change.format(line=lines[index])
    path.write_text("\n".join(lines))


SALT = "AAAAAAAAAAAAAAAAAAAAAA=="
CASES = {
    "gigabytes": (2, f"kdf: scrypt log2n=20 r=32 p=16 salt={SALT}", "asks for scrypt log2n=20"),
    "one-step-over": (2, f"kdf: scrypt log2n=19 r=8 p=1 salt={SALT}", "asks for scrypt log2n=19"),
    "r-doubled": (2, f"kdf: scrypt log2n=17 r=16 p=1 salt={SALT}", "r=16"),
    "p-many": (2, f"kdf: scrypt log2n=17 r=8 p=99 salt={SALT}", "p=99"),
    "huge-salt": (2, "kdf: scrypt log2n=10 r=8 p=1 salt=" + "A" * 400_000, "the kdf line"),
    "plus-sign": (2, f"kdf: scrypt log2n=+10 r=8 p=1 salt={SALT}", "the kdf line"),
    "trailing-word": (2, "{line} extra=1", "the kdf line"),
    "long-nonce": (4, "cipher: aes-256-gcm nonce=" + "A" * 64, "the cipher line"),
    "check-junk": (3, "{line}AAAA", "the check line"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_tampered_header_is_refused_before_key_derivation(
    sproject: SecretsProject, case: str
) -> None:
    p = sproject
    p.set("web1", "db_password", "correct horse")
    ok, _ = run_limited(p, "secrets", "list", "web1")
    assert ok.returncode == 0 and "db_password" in ok.stdout, ok  # the limit itself is enough
    index, change, fragment = CASES[case]
    tamper(p.stacks / "secrets" / "web1.enc", index, change)
    for args in (("secrets", "list", "web1"), ("build", "web1")):
        done, seconds = run_limited(p, *args)
        assert done.returncode == 2, done
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
        assert "web1.enc" in lines[0] and fragment in lines[0], lines[0]
        assert "restore it from git" in lines[0]
        assert "MemoryError" not in done.stderr
        assert seconds < 60, f"bundle {' '.join(args)} took {seconds:.1f} s"  # a hang guard
    assert not (p.bundles / "web1").exists() or not any(
        d.name[0].isdigit() for d in (p.bundles / "web1").iterdir()
    )
