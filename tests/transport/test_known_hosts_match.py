"""known_hosts lookups agree with OpenSSH's own `ssh-keygen -F NAME -f FILE` on the same files."""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from builder.deploy.transport.host_patterns import glob_match, lookup_name
from builder.deploy.transport.known_hosts import KnownHosts

from .sshkit import new_key

FOUND = re.compile(r"^# Host .* found: line (\d+) ?(CA|REVOKED|)$")
MARKER_WORD = {"CA": "cert-authority", "REVOKED": "revoked", "": None}


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """`TYPE BLOB` of two real keys."""
    folder = tmp_path_factory.mktemp("keys")
    pubs = [new_key(folder / f"k{i}").with_suffix(".pub").read_text() for i in range(2)]
    return [" ".join(p.split()[:2]) for p in pubs]


def openssh_finds(name: str, path: Path) -> list[tuple[int, str | None]]:
    out = subprocess.run(
        ["ssh-keygen", "-F", name, "-f", str(path)], capture_output=True, text=True, check=False
    )
    assert out.returncode in (0, 1), out.stderr
    found = (FOUND.match(line) for line in out.stdout.splitlines())
    return [(int(m[1]), MARKER_WORD[m[2]]) for m in found if m]


def we_find(name: str, path: Path) -> list[tuple[int, str | None]]:
    return [(k.line, k.marker) for k in KnownHosts.load([path]).lookup(name)]


def same_as_openssh(path: Path, names: list[str]) -> None:
    for name in names:
        assert we_find(name, path) == openssh_finds(name, path), (name, path.read_text())


def test_bracketed_ports_ipv6_lists_wildcards_and_negations(
    tmp_path: Path, keys: list[str]
) -> None:
    k = keys[0]
    known = tmp_path / "known_hosts"
    known.write_text(
        "# a comment\n"
        f"[203.0.113.5]:2222 {k}\n"
        f"203.0.113.5 {k}\n"
        f"[2001:db8::1]:2222,2001:db8::1 {k}\n"
        f"[::1]:2222 {k}\n"
        f"*.example.org,!bad.example.org {k}\n"
        f"web?.EXAMPLE.net {k}\n"
        f"[a-c]* {k}\n"
        f"[*]:2200 {k}\n"
        f"   \tindented.example {k} a comment\n"
        f"@revoked * {k}\n"
        f"@cert-authority *.ca.example {k}\n"
        f"@bogus everything {k}\n"
        f"@revoked @revoked * {k}\n"
        f"truncated.example ssh-ed25519\n"
        f"unknown-type.example ssh-foo AAAA\n"
        f"rsa1.example 2048 35 12345\n"
        f"hash-in-type.example #ssh-ed25519 AAAA\n"
        f"nul.example {k}\0 more\n"
        f"cr.example {k}\r\n"
        f"ff.example\x0cx.example {k}\n"
    )
    same_as_openssh(
        known,
        [
            "[203.0.113.5]:2222",
            "203.0.113.5",
            "[203.0.113.5]:22",
            "[2001:db8::1]:2222",
            "2001:db8::1",
            "[::1]:2222",
            "www.example.org",
            "bad.example.org",
            "BAD.example.ORG",
            "web1.example.net",
            "web12.example.net",
            "a",
            "[a-c]x",
            "[198.51.100.1]:2200",
            "indented.example",
            "x.ca.example",
            "everything",
            "truncated.example",
            "unknown-type.example",
            "rsa1.example",
            "hash-in-type.example",
            "nul.example",
            "cr.example",
            "x.example",
        ],
    )


def test_hashed_names_with_ports(tmp_path: Path, keys: list[str]) -> None:
    known = tmp_path / "known_hosts"
    names = ["[203.0.113.5]:2222", "203.0.113.5", "[2001:db8::1]:2222", "host.example"]
    known.write_text("".join(f"{n} {keys[0]}\n" for n in names) + f"*.wild {keys[1]}\n")
    subprocess.run(["ssh-keygen", "-q", "-H", "-f", str(known)], check=True, capture_output=True)
    text = known.read_text()
    assert "203.0.113.5" not in text and text.count("|1|") == 4
    # a broken hash is a line OpenSSH ignores
    known.write_text(text + f"|1|c2hvcnQ=|AAAA {keys[1]}\n|2|x|y {keys[1]}\n")
    same_as_openssh(known, [*names, "[203.0.113.5]:22", "HOST.example", "a.wild", "short"])


def test_lookup_name_is_the_one_openssh_uses() -> None:
    assert lookup_name("203.0.113.5", 22) == "203.0.113.5"
    assert lookup_name("203.0.113.5", 2222) == "[203.0.113.5]:2222"
    assert lookup_name("2001:DB8:0::1", 2222) == "[2001:db8::1]:2222"
    assert lookup_name("Web1.Example.ORG", 22) == "web1.example.org"
    assert lookup_name("10.0.0.1", 2222, "Server1") == "server1"


def test_only_star_and_question_mark_are_wildcards() -> None:
    assert glob_match(b"[a]", b"[a]")
    assert not glob_match(b"a", b"[a]")
    assert glob_match(b"[1.2.3.4]:22", b"[*]:22")
    assert glob_match(b"\xc3\xa9", b"??") and not glob_match(b"\xc3\xa9", b"?")
    assert glob_match(b"", b"*") and not glob_match(b"", b"?")


# ---- the same, for patterns and names nobody thought of ------------------------------------

PATTERN_CHARS = "ab.:[]*?!,1A\xe9"
NAME_CHARS = "ab.:[]1A\xe9"
lines = st.tuples(
    st.sampled_from(["", "@revoked ", "@cert-authority ", "@other ", "#"]),
    st.text(PATTERN_CHARS, min_size=1, max_size=12),
    st.integers(0, 1),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    entries=st.lists(lines, min_size=1, max_size=8),
    names=st.lists(st.text(NAME_CHARS, min_size=1, max_size=8), min_size=1, max_size=3),
)
def test_any_patterns_match_as_openssh_matches_them(
    entries: list[tuple[str, str, int]], names: list[str], keys: list[str]
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        known = Path(folder) / "known_hosts"
        known.write_text("".join(f"{m}{p} {keys[k]}\n" for m, p, k in entries))
        same_as_openssh(known, names)
