"""A server's host key against known_hosts, as OpenSSH decides (no paramiko).

The ssh config's UserKnownHostsFile, GlobalKnownHostsFile and StrictHostKeyChecking say which
files are read, where a new key goes and whether an unknown key may be added. The verdict,
first row that applies (`--accept-new` is `accept_new`):

| what known_hosts says for the name              | verdict                                   |
|-------------------------------------------------|-------------------------------------------|
| an `@revoked` line holds this key               | refused, always                           |
| a plain line holds this key                     | accepted                                  |
| plain lines hold only other keys                | refused (HAS CHANGED), always             |
| only `@cert-authority` lines name it            | refused (host certificates unsupported)   |
| nothing: StrictHostKeyChecking yes              | refused, even with --accept-new           |
| nothing: accept-new, no/off, or ask+accept_new  | accepted and added to the first user file |
| nothing: ask (the default)                      | refused, naming --accept-new              |
"""

from __future__ import annotations

import enum
import getpass
import hashlib
import os
import shlex
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from builder.deploy.transport.base import TransportError
from builder.deploy.transport.known_hosts import CA, REVOKED, HostKey, KnownHosts, fingerprint

USER_FILES = ("~/.ssh/known_hosts", "~/.ssh/known_hosts2")
GLOBAL_FILES = ("/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2")
SSH_KEYGEN_DEFAULT = "~/.ssh/known_hosts"  # the file `ssh-keygen -R` edits without -f


class Strict(enum.Enum):
    """StrictHostKeyChecking, with OpenSSH's synonyms folded."""

    YES = "yes"
    ACCEPT_NEW = "accept-new"
    NO = "no"
    ASK = "ask"


STRICT_WORDS = {
    "yes": Strict.YES,
    "true": Strict.YES,
    "accept-new": Strict.ACCEPT_NEW,
    "no": Strict.NO,
    "off": Strict.NO,
    "false": Strict.NO,
    "ask": Strict.ASK,
}


def config_error(message: str) -> TransportError:
    """A wrong value in the user's ssh config: bad input, exit 2."""
    return TransportError(message, exit_code=2)


@attrs.frozen
class HostKeyPolicy:
    """What the ssh config says about one server's host key.

    user_files: read, and the first one is where new keys go (none: keys are not recorded).
    global_files: only read.
    """

    user_files: tuple[Path, ...] = ()
    global_files: tuple[Path, ...] = ()
    strict: Strict = Strict.ASK


@attrs.frozen
class Tokens:
    """What OpenSSH's %-tokens stand for in one connection (ssh_config(5) TOKENS)."""

    host_arg: str  # %n: the name as the user wrote it
    hostname: str  # %h: after HostName
    port: int
    user: str
    alias: str | None = None
    jump: str = ""

    def table(self) -> dict[str, str]:
        this = socket.gethostname()
        home = os.path.expanduser("~")
        conn = f"{this}{self.hostname}{self.port}{self.user}{self.jump}"
        return {
            "C": hashlib.sha1(conn.encode()).hexdigest(),
            "L": this.split(".")[0],
            "i": str(os.getuid()),
            "k": self.alias or self.host_arg,
            "l": this,
            "n": self.host_arg,
            "p": str(self.port),
            "d": home,
            "h": self.hostname,
            "r": self.user,
            "u": getpass.getuser(),
            "j": self.jump,
        }


def expand(value: str, tokens: Mapping[str, str], keyword: str) -> str:
    """OpenSSH's `${VAR}` and `%x` expansion; an unknown token or unset variable is an error."""
    out: list[str] = []
    i = 0
    while i < len(value):
        if value.startswith("${", i):
            end = value.find("}", i + 2)
            name = value[i + 2 : end] if end > 0 else ""
            if not name or name not in os.environ:
                what = "an unterminated ${" if end < 0 else f"${{{name}}}, which is not set,"
                raise config_error(
                    f"{keyword} {value!r} in your ssh config uses {what}; fix that line"
                )
            out.append(os.environ[name])
            i = end + 1
        elif value[i] == "%":
            token = value[i + 1 : i + 2]
            if token != "%" and token not in tokens:
                raise config_error(
                    f"{keyword} {value!r} in your ssh config has an unknown token %{token} "
                    f"(known: %% {' '.join('%' + t for t in tokens)}); fix that line"
                )
            out.append("%" if token == "%" else tokens[token])
            i += 2
        else:
            out.append(value[i])
            i += 1
    return "".join(out)


def _file_list(value: str | None, keyword: str, default: tuple[str, ...]) -> list[str]:
    if value is None:
        return list(default)
    try:
        words = shlex.split(value)
    except ValueError as e:
        raise config_error(f"{keyword} {value!r} in your ssh config: {e}; fix that line") from None
    if any(w.lower() == "none" for w in words) and len(words) > 1:
        raise config_error(
            f'{keyword} "none" must stand alone in your ssh config ({value!r}); fix that line'
        )
    return [] if [w.lower() for w in words] == ["none"] else words


def policy_from_config(found: Mapping[str, Any], tokens: Tokens) -> HostKeyPolicy:
    """The host key settings of one `Host` lookup, with `~` and tokens expanded where
    OpenSSH expands them (GlobalKnownHostsFile: `~` only)."""
    table = tokens.table()
    user = _file_list(found.get("userknownhostsfile"), "UserKnownHostsFile", USER_FILES)
    system = _file_list(found.get("globalknownhostsfile"), "GlobalKnownHostsFile", GLOBAL_FILES)
    strict_word = found.get("stricthostkeychecking", "ask")
    strict = STRICT_WORDS.get(strict_word.lower())
    if strict is None:
        raise config_error(
            f"StrictHostKeyChecking {strict_word!r} in your ssh config is not one of "
            "yes, accept-new, no, off, ask; fix that line"
        )
    return HostKeyPolicy(
        user_files=tuple(
            Path(expand(os.path.expanduser(f), table, "UserKnownHostsFile")) for f in user
        ),
        global_files=tuple(Path(os.path.expanduser(f)) for f in system),
        strict=strict,
    )


# ---- the verdict ----------------------------------------------------------------------------


def _remove_hint(name: str, old: HostKey) -> str:
    default = old.file == Path(SSH_KEYGEN_DEFAULT).expanduser()
    file_arg = "" if default else f" -f {shlex.quote(str(old.file))}"
    return f"`ssh-keygen -R {shlex.quote(name)}{file_arg}`"


def verdict(
    known: KnownHosts,
    name: str,
    key_type: str,
    blob: str,
    strict: Strict,
    accept_new: bool,
    who: str,
) -> bool:
    """True: accept the key and record it; False: it is known. Refusals raise TransportError
    (exit 1, one line). See the table in this module's docstring."""
    entries = known.lookup(name)
    fp = fingerprint(blob)
    revoked = next((k for k in entries if k.marker == REVOKED and k.is_key(blob)), None)
    if revoked is not None:
        raise TransportError(
            f"the host key of {who} ({key_type} {fp}) is REVOKED by {revoked.where()}; "
            "do not connect until its administrator gives you its new key"
        )
    plain = [k for k in entries if k.marker is None]
    if any(k.is_key(blob) for k in plain):
        return False
    again = "rerun" if strict is not Strict.ASK else "rerun with --accept-new"
    if plain:
        old = next((k for k in plain if k.plain_type() == key_type), plain[0])
        raise TransportError(
            f"the host key of {who} HAS CHANGED: it is now {key_type} {fp}, "
            f"{old.where()} says otherwise; someone may be intercepting the connection; "
            f"if you rebuilt the server, remove the old line with {_remove_hint(name, old)} "
            f"and {again}"
        )
    authority = next((k for k in entries if k.marker == CA), None)
    if authority is not None:
        raise TransportError(
            f"{who} is trusted through the @cert-authority line {authority.where()}, but host "
            "certificates are not supported: check its fingerprint "
            f"{fp} ({key_type}) and add `{name} {key_type} KEY` to {_target(known)}"
        )
    if strict is Strict.YES:
        raise TransportError(
            f"the host key of {who} is not in known_hosts ({_files(known)}) and "
            "StrictHostKeyChecking yes in your ssh config forbids adding it: check its "
            f"fingerprint {fp} ({key_type}) and add it to {_target(known)} yourself"
        )
    if strict is Strict.ASK and not accept_new:
        raise TransportError(
            f"the host key of {who} is not in known_hosts ({_files(known)}): "
            f"check its fingerprint {fp} ({key_type}) and rerun with --accept-new"
        )
    return True


def _files(known: KnownHosts) -> str:
    shown = [f for f in known.files if f == known.user_file or f.exists()]
    return ", ".join(map(str, shown)) or "none: UserKnownHostsFile is none"


def _target(known: KnownHosts) -> str:
    return str(known.user_file) if known.user_file else "a UserKnownHostsFile"
