"""Secret values found in a compose file, moved into `bundle secrets` instead of the stack."""

from __future__ import annotations

import re
import shlex

import attrs

from builder.importer.report import Note
from builder.stack.names import NAME

VALUE_LIMIT = 512000  # podman's limit for one secret
# A word of an environment variable's name that says its value is a credential.
SECRET_WORDS = re.compile(
    r"PASSWORD|PASSWD|PASSPHRASE|SECRET|TOKEN|APIKEY|PRIVATE|CREDENTIAL|^PASS$|^PWD$|^PW$|^KEY$"
    r"|^SALT$|^DSN$"
)


def looks_secret(key: str) -> bool:
    """MYSQL_PASSWORD, SECRET_KEY, API_TOKEN: yes; PASSWORD_FILE (a path), PUBLIC_KEY: no."""
    words = [w for w in re.split(r"[_.-]+", key.upper()) if w]
    if not words or words[-1] in ("FILE", "PATH", "LENGTH", "MIN", "MAX") or "PUBLIC" in words:
        return False
    return any(SECRET_WORDS.search(w) for w in words)


def secret_name(text: str) -> str:
    name = re.sub(r"[^a-z0-9_-]+", "_", text.lower()).strip("_-")[:63]
    return name if NAME.match(name) else "secret"


@attrs.define
class FoundSecrets:
    """Values to store in stacks/secrets/HOST.enc; one name per distinct value, so a password
    two services share (the database's and the app's) stays one secret to rotate."""

    values: dict[str, str] = attrs.field(factory=dict)

    def name_for(self, value: str, wanted: str) -> str:
        for name, known in self.values.items():
            if known == value:
                return name
        name, n = secret_name(wanted), 2
        while name in self.values:
            name, n = f"{secret_name(wanted)[:60]}-{n}", n + 1
        self.values[name] = value
        return name

    def check(self, value: str, where: str) -> Note | None:
        """Why a value cannot be a podman secret, or None."""
        if len(value.encode()) > VALUE_LIMIT:
            return Note(where, f"the value is over {VALUE_LIMIT} bytes (podman's limit)")
        return None


# Flags that run a word into PASS or AUTH: redis-server's --requirepass and --masterauth.
JOINED_FLAGS = {"REQUIREPASS", "MASTERAUTH"}
URL_PASSWORD = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*:[^/\s@]+@")


def has_url_password(value: str) -> bool:
    """postgres://app:pa55@db/app: a credential in a value whose name does not say so."""
    return URL_PASSWORD.search(value) is not None


def _secret_flag(flag: str) -> bool:
    name = flag.lstrip("-")
    return flag.startswith("-") and (looks_secret(name) or name.upper() in JOINED_FLAGS)


def _literal(value: str) -> bool:
    return bool(value) and not value.startswith(("$", "/"))  # a variable or a path is no value


@attrs.frozen
class Argument:
    """A credential given on a command line: in which word, after which flag, and its value."""

    word: int
    flag: str
    value: str


def argument_credentials(words: list[str]) -> list[Argument]:
    """`--requirepass xyz`, `--server-password=xyz`, a URL with a password; also inside an
    `sh -c "..."` word. Variables (`$PASS`) and paths (`--key /etc/key.pem`) are not values."""
    tokens: list[tuple[int, str]] = []
    for i, word in enumerate(words):
        try:
            parts = shlex.split(word) if any(ch.isspace() for ch in word) else [word]
        except ValueError:
            parts = word.split()
        tokens += [(i, part) for part in parts]
    found: list[Argument] = []
    for n, (i, token) in enumerate(tokens):
        flag, eq, value = token.partition("=")
        if eq and _secret_flag(flag) and _literal(value):
            found.append(Argument(i, flag, value))
        elif not eq and _secret_flag(token) and n + 1 < len(tokens):
            value = tokens[n + 1][1]
            if _literal(value) and not value.startswith("-"):
                found.append(Argument(tokens[n + 1][0], token, value))
        elif has_url_password(token):
            found.append(Argument(i, flag if eq else "a URL", value if eq else token))
    return found
