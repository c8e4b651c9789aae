"""Reading Ansible Vault files (format 1.1 and 1.2, AES256), to import their variables as secrets.

A vault is `$ANSIBLE_VAULT;1.1;AES256` (1.2 adds `;LABEL`, the vault id), then hex lines. The
hex decodes to three hex lines: salt, HMAC, ciphertext. PBKDF2-HMAC-SHA256 (10000 rounds) of
the password and salt gives 80 bytes: the AES-256 key, the HMAC-SHA256 key, the CTR counter.
The HMAC covers the ciphertext; the plaintext is PKCS#7-padded. This is the documented format
(docs.ansible.com, "Vault format"), read with `cryptography`; the `ansible-vault` package would
bring all of ansible-core for the same twenty lines.

Both a vaulted file and a YAML file with `!vault |` values (ansible-vault encrypt_string) are
read. Each top-level scalar variable becomes a secret; what cannot be one is listed as skipped.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Any

import yaml
from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from builder.stack.names import NAME

HEADER = re.compile(r"\$ANSIBLE_VAULT;(1\.[12]);AES256(?:;[^\n;]+)?")
VALUE_LIMIT = 512000  # podman's limit for one secret
FILE_LIMIT = 16 * 1024 * 1024


class VaultError(Exception):
    """The file is not a vault this reads, or the password does not open it; one line."""


@dataclass(frozen=True)
class Imported:
    values: dict[str, str]  # secret name -> value
    skipped: list[tuple[str, str]]  # (variable, why), in the file's order
    renamed: dict[str, str]  # secret name -> the variable it came from, when they differ


def is_vault(text: str) -> bool:
    return text.lstrip().startswith("$ANSIBLE_VAULT;")


def decrypt(text: str, password: bytes) -> bytes:
    """The plaintext of one vaulted text; VaultError names what is wrong."""
    lines = text.strip().splitlines()
    header = lines[0].strip() if lines else ""
    if not HEADER.fullmatch(header):
        raise VaultError(
            f"unsupported vault header {header[:40]!r}: this reads 1.1 and 1.2 with AES256"
        )
    try:
        outer = binascii.unhexlify("".join(line.strip() for line in lines[1:]))
        salt_hex, mac_hex, body_hex = outer.split(b"\n")
        salt, mac, body = (binascii.unhexlify(h) for h in (salt_hex, mac_hex, body_hex))
    except (binascii.Error, ValueError):
        raise VaultError("the vault's body is not the hex it should be (a damaged file?)") from None
    keys = PBKDF2HMAC(hashes.SHA256(), length=80, salt=salt, iterations=10000).derive(password)
    expected = hmac.new(keys[32:64], body, hashlib.sha256).digest()
    if not hmac.compare_digest(expected, mac):
        raise VaultError("wrong vault password (or the file was changed)")
    decryptor = Cipher(algorithms.AES(keys[:32]), modes.CTR(keys[64:])).decryptor()
    padded = decryptor.update(body) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    try:
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        raise VaultError("the vault's plaintext has bad padding (a damaged file?)") from None


class _Loader(yaml.SafeLoader):
    """safe_load, and `!vault |` scalars decrypted with the one password."""

    password = b""


def _vault_scalar(loader: _Loader, node: yaml.Node) -> str:
    plain = decrypt(str(loader.construct_scalar(node)), loader.password)  # type: ignore[arg-type]
    try:
        return plain.decode("utf-8")
    except UnicodeDecodeError:
        raise VaultError("a !vault value is not UTF-8 text") from None


_Loader.add_constructor("!vault", _vault_scalar)


def load_variables(text: str, password: bytes) -> dict[str, Any]:
    """The top-level variables of a vaulted YAML file, or of a YAML file with !vault values."""
    if not is_vault(text) and "!vault" not in text:
        raise VaultError("not an Ansible Vault file (no $ANSIBLE_VAULT header, no !vault value)")
    if is_vault(text):
        try:
            text = decrypt(text, password).decode("utf-8")
        except UnicodeDecodeError:
            raise VaultError("the decrypted vault is not UTF-8 text") from None
    loader = type("Loader", (_Loader,), {"password": password})
    try:
        data = yaml.load(text, Loader=loader)  # a SafeLoader with one more tag
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise VaultError(f"the decrypted file is not valid YAML{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise VaultError("the decrypted file is not a mapping of variables (NAME: value)")
    return data


def secret_name(variable: str) -> str | None:
    """A variable's secret name: lower case, no leading underscores; None if none fits."""
    name = variable.lower().lstrip("_")
    return name if NAME.fullmatch(name) else None


def _text(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    return None


def to_secrets(variables: dict[Any, Any]) -> Imported:
    values: dict[str, str] = {}
    renamed: dict[str, str] = {}
    skipped: list[tuple[str, str]] = []
    for variable, value in variables.items():
        label = str(variable)
        name = secret_name(label) if isinstance(variable, str) else None
        text = _text(value)
        if name is None:
            skipped.append((label, "cannot be a secret name (1-63 of a-z 0-9 - _)"))
        elif isinstance(value, dict | list):
            skipped.append((label, "nested value (a list or mapping), not one string"))
        elif text is None or text == "":
            skipped.append((label, "empty value"))
        elif len(text.encode()) > VALUE_LIMIT:
            skipped.append((label, f"value over {VALUE_LIMIT} bytes (podman's limit)"))
        elif name in values:
            skipped.append((label, f"same secret name as {renamed.get(name, name)}"))
        else:
            values[name] = text
            if name != label:
                renamed[name] = label
    return Imported(values, skipped, renamed)
