"""Secret values found in a compose file, moved into `bundle secrets` instead of the stack."""

from __future__ import annotations

import re

import attrs

from builder.compose_report import Note
from builder.names import NAME

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
