"""Host keys of a server on a non-22 port (`[host]:port` entries), the ssh config's
UserKnownHostsFile / GlobalKnownHostsFile / StrictHostKeyChecking, and known_hosts markers."""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from builder.deploy.transport import TransportError
from builder.deploy.transport.ssh import connect
from tests.harness import Target
from tests.server.conftest import make_deploy_project

from .sshkit import host_key_lines, new_key, pinned_options

PORT = 2222


@pytest.fixture(scope="module")
def second_port(forgiving_sshd: Target) -> Iterator[Target]:
    """The module's server with sshd listening on port 2222 as well."""
    target = forgiving_sshd
    target.write_file("/etc/ssh/sshd_config.d/61-second-port.conf", f"Port 22\nPort {PORT}\n")
    target.ssh("sshd -t && systemctl restart ssh")
    yield target
    target.ssh("rm /etc/ssh/sshd_config.d/61-second-port.conf && systemctl restart ssh")


def ported(target: Target) -> str:
    return f"[{target.host}]:{PORT}"


def server_lines(target: Target) -> str:
    """The server's real keys, named as OpenSSH names it on port 2222."""
    return host_key_lines(target, ported(target))


def wrong_key(tmp_path: Path) -> str:
    """`TYPE BLOB` of a key the server does not have."""
    return " ".join(
        new_key(tmp_path / "not_the_server").with_suffix(".pub").read_text().split()[:2]
    )


def server_ed25519(target: Target) -> str:
    line = next(ln for ln in target.known_hosts_path.read_text().splitlines() if "ed25519" in ln)
    return line.split(" ", 1)[1]


def ssh_config(tmp_path: Path, target: Target, extra: str = "") -> Path:
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host vps\n  HostName {target.host}\n  Port {PORT}\n  User root\n"
        f"  IdentityFile {target.key_path}\n{extra}"
    )
    return config


def by_config(target: Target, tmp_path: Path, config: Path) -> object:
    """Options that leave every known_hosts decision to the ssh config."""
    return pinned_options(
        target, tmp_path, config=config, known_hosts=None, extra_known_hosts=(), identity_files=()
    )


def refusal(accept_new: bool, **kwargs: object) -> TransportError:
    with pytest.raises(TransportError) as e:
        connect("vps", accept_new=accept_new, **kwargs)  # type: ignore[arg-type]
    assert "\n" not in str(e.value)
    return e.value


pytestmark = pytest.mark.usefixtures("second_port")


# ---- [host]:port entries --------------------------------------------------------------------


def test_a_port_entry_is_known_without_accept_new(target: Target, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text(server_lines(target))
    options = pinned_options(target, tmp_path, extra_known_hosts=(), known_hosts=known)
    with connect(target.host, PORT, "root", options=options) as t:
        assert t.describe() == f"root@{target.host}:{PORT}"
        assert t.run(["true"]).ok
    assert known.read_text() == server_lines(target)  # nothing added


@pytest.mark.parametrize("hashed", [False, True], ids=["plain", "hashed"])
def test_a_changed_key_on_a_port_is_refused_even_with_accept_new(
    target: Target, tmp_path: Path, hashed: bool
) -> None:
    known = tmp_path / "known_hosts"
    known.write_text(f"# pinned\n{ported(target)} {wrong_key(tmp_path)}\n")
    if hashed:
        subprocess.run(["ssh-keygen", "-q", "-H", "-f", str(known)], check=True)
        assert target.host not in known.read_text()
    before = known.read_text()
    options = pinned_options(target, tmp_path, extra_known_hosts=(), known_hosts=known)
    for accept_new in (False, True):
        with pytest.raises(TransportError) as e:
            connect(target.host, PORT, "root", accept_new=accept_new, options=options)
        msg = str(e.value)
        assert "\n" not in msg and e.value.exit_code == 1
        assert f"the host key of root@{target.host}:{PORT} HAS CHANGED" in msg
        assert f"{known}:2 says otherwise" in msg
        remove = f"ssh-keygen -R {shlex.quote(ported(target))} -f {known}"
        assert f"`{remove}`" in msg
        assert known.read_text() == before
    # the advice works: OpenSSH removes that line, and then the key is unknown, not changed
    subprocess.run(shlex.split(remove), check=True, capture_output=True)
    with pytest.raises(TransportError, match="is not in known_hosts"):
        connect(target.host, PORT, "root", options=options)


def test_the_port_22_entry_does_not_vouch_for_another_port(target: Target, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text(host_key_lines(target, target.host))
    options = pinned_options(target, tmp_path, extra_known_hosts=(), known_hosts=known)
    with pytest.raises(TransportError, match=rf"root@{target.host}:{PORT} is not in known_hosts"):
        connect(target.host, PORT, "root", options=options)


def test_brackets_are_not_a_character_class(target: Target, tmp_path: Path) -> None:
    # `[10.200.x.2]:2222` once matched as a class of characters; `[*]:2222` is a real pattern
    known = tmp_path / "known_hosts"
    known.write_text(f"[*]:{PORT} {server_ed25519(target)}\n")
    options = pinned_options(target, tmp_path, extra_known_hosts=(), known_hosts=known)
    with connect(target.host, PORT, "root", options=options) as t:
        assert t.run(["true"]).ok
    known.write_text(f"[*]:{PORT},!{ported(target)} {server_ed25519(target)}\n")
    with pytest.raises(TransportError, match="is not in known_hosts"):
        connect(target.host, PORT, "root", options=options)


# ---- markers --------------------------------------------------------------------------------


def test_a_revoked_key_is_refused_whatever_else_says_so(target: Target, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text(server_lines(target) + f"@revoked * {server_ed25519(target)}\n")
    revoked_at = len(server_lines(target).splitlines()) + 1
    options = pinned_options(target, tmp_path, extra_known_hosts=(), known_hosts=known)
    for accept_new in (False, True):
        with pytest.raises(TransportError) as e:
            connect(target.host, PORT, "root", accept_new=accept_new, options=options)
        assert f"root@{target.host}:{PORT} (ssh-ed25519 SHA256:" in str(e.value)
        assert f"is REVOKED by {known}:{revoked_at}" in str(e.value)


def test_a_cert_authority_line_is_refused_not_ignored(target: Target, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text(f"@cert-authority * {wrong_key(tmp_path)}\n")
    options = pinned_options(target, tmp_path, extra_known_hosts=(), known_hosts=known)
    for accept_new in (False, True):
        with pytest.raises(TransportError) as e:
            connect(target.host, PORT, "root", accept_new=accept_new, options=options)
        msg = str(e.value)
        assert f"trusted through the @cert-authority line {known}:1" in msg
        assert "host certificates are not supported" in msg
        assert f"add `{ported(target)} ssh-ed25519 KEY` to {known}" in msg
    assert known.read_text().count("\n") == 1  # accept-new added nothing
    # the server's own key next to it is what the message asks for, and it works
    known.write_text(known.read_text() + f"{ported(target)} {server_ed25519(target)}\n")
    with connect(target.host, PORT, "root", options=options) as t:
        assert t.run(["true"]).ok


# ---- the ssh config -------------------------------------------------------------------------


def test_user_known_hosts_files_from_the_config(
    target: Target, tmp_path: Path, hermetic_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # several files, `~`, %d and ${VAR}; the changed key is in the second one
    monkeypatch.setenv("KH_DIR", str(tmp_path))
    first = hermetic_home / "kh" / "first"
    second = tmp_path / "second"
    second.write_text(f"{ported(target)} {wrong_key(tmp_path)}\n")
    config = ssh_config(tmp_path, target, "  UserKnownHostsFile ~/kh/first ${KH_DIR}/second\n")
    options = by_config(target, tmp_path, config)
    err = refusal(True, options=options)
    assert "HAS CHANGED: it is now ssh-ed25519 SHA256:" in str(err)
    assert f"{second}:1 says otherwise" in str(err)
    assert f"-f {second}`" in str(err)
    assert not first.exists()
    # the right key in the second file: known, and nothing is written anywhere
    second.write_text(server_lines(target))
    with connect("vps", options=options) as t:
        assert t.run(["true"]).ok
    assert not first.exists()
    # %d is the home folder, %h the host, %p the port
    config.write_text(config.read_text().replace("~/kh/first", "%d/kh/%h-%p"))
    second.unlink()
    with connect("vps", accept_new=True, options=options):
        pass
    written = hermetic_home / "kh" / f"{target.host}-{PORT}"
    assert written.read_text() == f"{ported(target)} {server_ed25519(target)}\n"
    found = subprocess.run(
        ["ssh-keygen", "-F", ported(target), "-f", str(written)], capture_output=True, text=True
    )
    assert "ssh-ed25519" in found.stdout


def test_global_known_hosts_file_is_read_not_written(target: Target, tmp_path: Path) -> None:
    site = tmp_path / "site_known_hosts"
    site.write_text(server_lines(target))
    user = tmp_path / "mine"
    config = ssh_config(
        tmp_path, target, f"  UserKnownHostsFile {user}\n  GlobalKnownHostsFile {site}\n"
    )
    with connect("vps", options=by_config(target, tmp_path, config)) as t:
        assert t.run(["true"]).ok
    assert not user.exists()
    site.write_text(f"{ported(target)} {wrong_key(tmp_path)}\n")
    err = refusal(True, options=by_config(target, tmp_path, config))
    assert f"{site}:1 says otherwise" in str(err)


def test_strict_host_key_checking_yes_never_adds(target: Target, tmp_path: Path) -> None:
    user = tmp_path / "mine"
    config = ssh_config(tmp_path, target, f"  UserKnownHostsFile {user}\n")
    config.write_text("Host *\n  StrictHostKeyChecking yes\n" + config.read_text())
    for accept_new in (False, True):
        err = refusal(accept_new, options=by_config(target, tmp_path, config))
        assert "StrictHostKeyChecking yes in your ssh config forbids adding it" in str(err)
        assert f"add it to {user} yourself" in str(err)
    assert not user.exists()


@pytest.mark.parametrize("word", ["accept-new", "no", "off"])
def test_strict_accept_new_and_no_add_unknown_but_refuse_changed(
    target: Target, tmp_path: Path, word: str
) -> None:
    user = tmp_path / "mine"
    config = ssh_config(
        tmp_path, target, f"  UserKnownHostsFile {user}\n  StrictHostKeyChecking {word}\n"
    )
    options = by_config(target, tmp_path, config)
    with connect("vps", options=options) as t:  # no --accept-new needed
        assert t.run(["true"]).ok
    assert user.read_text() == f"{ported(target)} {server_ed25519(target)}\n"
    user.write_text(f"{ported(target)} {wrong_key(tmp_path)}\n")
    for accept_new in (False, True):
        err = refusal(accept_new, options=options)
        assert "HAS CHANGED" in str(err) and str(err).endswith("and rerun")
    assert user.read_text().count("\n") == 1


def test_strict_ask_is_the_default_and_wants_accept_new(target: Target, tmp_path: Path) -> None:
    user = tmp_path / "mine"
    config = ssh_config(
        tmp_path, target, f"  UserKnownHostsFile {user}\n  StrictHostKeyChecking ask\n"
    )
    err = refusal(False, options=by_config(target, tmp_path, config))
    assert str(err).endswith("rerun with --accept-new") and f"({user})" in str(err)
    with connect("vps", accept_new=True, options=by_config(target, tmp_path, config)):
        pass
    assert user.read_text() == f"{ported(target)} {server_ed25519(target)}\n"


def test_user_known_hosts_file_none_accepts_without_recording(
    target: Target, tmp_path: Path, hermetic_home: Path
) -> None:
    config = ssh_config(
        tmp_path, target, "  UserKnownHostsFile none\n  StrictHostKeyChecking accept-new\n"
    )
    with connect("vps", options=by_config(target, tmp_path, config)) as t:
        assert t.run(["true"]).ok
    assert not (hermetic_home / ".ssh").exists()


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("StrictHostKeyChecking maybe", "StrictHostKeyChecking 'maybe' in your ssh config is not"),
        ("UserKnownHostsFile none /x", 'UserKnownHostsFile "none" must stand alone'),
        ("UserKnownHostsFile /x/%Z", "has an unknown token %Z"),
        ("UserKnownHostsFile ${NOT_SET_ANYWHERE}/x", "${NOT_SET_ANYWHERE}, which is not set"),
    ],
)
def test_bad_host_key_settings_are_bad_input(
    target: Target, tmp_path: Path, line: str, says: str
) -> None:
    config = ssh_config(tmp_path, target, f"  {line}\n")
    err = refusal(False, options=by_config(target, tmp_path, config))
    assert says in str(err) and str(err).endswith("fix that line")
    assert err.exit_code == 2


# ---- the command line -----------------------------------------------------------------------


def test_bundle_status_refuses_a_changed_key_on_a_port(target: Target, tmp_path: Path) -> None:
    project = make_deploy_project(tmp_path, target)
    ssh = project.home / ".ssh"
    pinned = ssh / "pinned_hosts"
    config = (ssh / "config").read_text().replace(f"Port {target.port}", f"Port {PORT}")
    (ssh / "config").write_text(config + f"  UserKnownHostsFile {pinned}\n")
    (ssh / "known_hosts").unlink()
    pinned.write_text(server_lines(target))
    ok = project.run("status", "web1")
    assert ok.returncode == 0, ok.stderr
    pinned.write_text(f"{ported(target)} {wrong_key(tmp_path)}\n")
    for extra in ((), ("--accept-new",)):
        result = project.run("status", "web1", *extra)
        assert result.returncode == 1, result.stdout + result.stderr
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and "Traceback" not in result.stderr
        assert lines[0].startswith("error: the host key of ") and "HAS CHANGED" in lines[0]
        assert f"{pinned}:1 says otherwise" in lines[0]
    assert pinned.read_text().count("\n") == 1
