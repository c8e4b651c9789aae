"""STATE/live through the switcher process: the reloadable config files of `current`, each
rewritten in place (the inode a running container's bind mount holds) at every flip, forward
and back; files no generation wants go."""

from __future__ import annotations

from pathlib import Path

from .switcherkit import Bundle, U, make_bundle, push, switcher

CONF = "files/web/web.conf"


def bundle(n: int, state: Path, conf: bytes, reload: bool = True) -> Bundle:
    mount = "live" if reload else "current"
    unit = U(
        f"[Container]\nImage=web\nVolume={state}/{mount}/{CONF}:/etc/web.conf:ro\n",
        refs=(CONF,),
        reload=(CONF,) if reload else None,
    )
    return make_bundle(
        n, state, {"web.container": unit}, {CONF: (conf, 0o640)}, parent=n - 1 or None
    )


def activate(state: Path, root: Path, b: Bundle) -> dict:
    assert push(b, state, root).rc == 0
    r = switcher("activate", state, root, "--generation", str(b.generation))
    assert r.rc == 0, r
    return r.data


def test_live_files_follow_current_in_place(state: Path, root: Path) -> None:
    live = state / "live" / CONF
    activate(state, root, bundle(1, state, b"one\n"))
    assert live.read_bytes() == b"one\n" and (live.stat().st_mode & 0o777) == 0o640
    inode = live.stat().st_ino

    report = activate(state, root, bundle(2, state, b"two, longer\n"))
    assert report["plan"]["reload"] == ["web.container"]
    assert live.read_bytes() == b"two, longer\n" and live.stat().st_ino == inode

    back = switcher("rollback", state, root)
    assert back.rc == 0, back
    assert live.read_bytes() == b"one\n" and live.stat().st_ino == inode

    activate(state, root, bundle(3, state, b"three\n", reload=False))
    assert not live.exists()  # no reloadable container left: nothing stays behind
