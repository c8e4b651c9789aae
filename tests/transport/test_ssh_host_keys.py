"""Host keys: unknown ones are refused unless --accept-new, changed ones always."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from builder.deploy.transport import TransportError
from builder.deploy.transport.ssh import connect
from tests.harness import Target

from .sshkit import new_key, pinned_options

pytestmark = pytest.mark.usefixtures("forgiving_sshd")


def ed25519_line(target: Target) -> str:
    return next(ln for ln in target.known_hosts_path.read_text().splitlines() if "ed25519" in ln)


def server_fingerprint(target: Target, tmp_path: Path) -> str:
    one = tmp_path / "one_key"
    one.write_text(ed25519_line(target) + "\n")
    out = subprocess.run(["ssh-keygen", "-l", "-f", str(one)], capture_output=True, text=True)
    return out.stdout.split()[1]


def test_unknown_host_key_is_refused(target: Target, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    options = pinned_options(target, tmp_path, extra_known_hosts=())
    with pytest.raises(TransportError) as e:
        connect(target.host, options=options, default_user="root")
    msg = str(e.value)
    assert "\n" not in msg and e.value.exit_code == 1
    assert f"the host key of root@{target.host}:22 is not in known_hosts" in msg
    assert f"check its fingerprint {server_fingerprint(target, tmp_path)}" in msg
    assert msg.endswith("rerun with --accept-new")
    assert not known.exists()


def test_accept_new_writes_known_hosts(target: Target, tmp_path: Path) -> None:
    known = tmp_path / "dot-ssh" / "known_hosts"
    options = pinned_options(target, tmp_path, extra_known_hosts=(), known_hosts=known)
    with connect(target.host, accept_new=True, options=options, default_user="root") as t:
        assert t.run(["hostname"]).ok
    assert known.read_text() == f"{ed25519_line(target)}\n"
    assert oct(known.parent.stat().st_mode & 0o777) == "0o700"
    # OpenSSH reads what we wrote
    ok = subprocess.run(
        ["ssh-keygen", "-F", target.host, "-f", str(known)], capture_output=True, text=True
    )
    assert "ssh-ed25519" in ok.stdout
    # and from now on, without accept_new, the key is known and nothing is added twice
    with connect(target.host, options=options, default_user="root") as t:
        assert t.run(["true"]).ok
    with connect(target.host, accept_new=True, options=options, default_user="root") as t:
        assert t.run(["true"]).ok
    assert len(known.read_text().splitlines()) == 1


def test_accept_new_goes_to_the_users_known_hosts(
    target: Target, tmp_path: Path, hermetic_home: Path
) -> None:
    options = pinned_options(target, tmp_path, extra_known_hosts=(), known_hosts=None)
    with connect(target.host, accept_new=True, options=options, default_user="root"):
        pass
    assert (hermetic_home / ".ssh/known_hosts").read_text() == f"{ed25519_line(target)}\n"


def test_changed_host_key_is_refused_even_with_accept_new(target: Target, tmp_path: Path) -> None:
    wrong = new_key(tmp_path / "not_the_server")
    known = tmp_path / "known_hosts"
    known.write_text(
        f"# mine\n{target.host} {' '.join(wrong.with_suffix('.pub').read_text().split()[:2])}\n"
    )
    options = pinned_options(target, tmp_path, extra_known_hosts=())
    with pytest.raises(TransportError) as e:
        connect(target.host, accept_new=True, options=options, default_user="root")
    msg = str(e.value)
    assert "\n" not in msg
    assert f"the host key of root@{target.host}:22 HAS CHANGED" in msg
    assert f"{known}:2 says otherwise" in msg
    assert f"remove the old line with `ssh-keygen -R {target.host} -f {known}`" in msg
    assert server_fingerprint(target, tmp_path) in msg
    assert known.read_text().count("\n") == 2  # nothing was added


def test_changed_key_in_an_extra_file_names_that_file(target: Target, tmp_path: Path) -> None:
    wrong = new_key(tmp_path / "other")
    extra = tmp_path / "pinned"
    extra.write_text(
        f"{target.host} {' '.join(wrong.with_suffix('.pub').read_text().split()[:2])}\n"
    )
    options = pinned_options(target, tmp_path, extra_known_hosts=(extra,))
    with pytest.raises(TransportError, match=re.escape(f"ssh-keygen -R {target.host} -f {extra}")):
        connect(target.host, options=options, default_user="root")


def test_hashed_known_hosts(target: Target, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    shutil.copy(target.known_hosts_path, known)
    subprocess.run(["ssh-keygen", "-q", "-H", "-f", str(known)], check=True, capture_output=True)
    assert target.host not in known.read_text()
    options = pinned_options(target, tmp_path, extra_known_hosts=(), known_hosts=known)
    with connect(target.host, options=options, default_user="root") as t:
        assert t.run(["true"]).ok


def test_known_key_of_another_type_is_preferred(target: Target, tmp_path: Path) -> None:
    # only the server's ECDSA key is pinned: we must ask for it, not report a change
    ecdsa = next(ln for ln in target.known_hosts_path.read_text().splitlines() if "ecdsa" in ln)
    known = tmp_path / "known_hosts"
    known.write_text(ecdsa + "\n")
    options = pinned_options(target, tmp_path, extra_known_hosts=(), known_hosts=known)
    with connect(target.host, options=options, default_user="root") as t:
        assert t.run(["true"]).ok
