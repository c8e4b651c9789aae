"""Compose's variable interpolation and its `.env` / `env_file` format, as pure functions.

`$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?error}`, `${VAR?error}`,
`${VAR:+alt}`, `${VAR+alt}` (the word may hold more of them), and `$$` for a literal `$`.
A `$` followed by anything else is an error, as in docker compose.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from builder.base.errors import InputError

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
OPERATORS = (":-", ":?", ":+", "-", "?", "+")
Lookup = Callable[[str], str | None]


@attrs.frozen
class Unset:
    """A variable used without a default that has no value: compose puts an empty string."""

    name: str
    where: str


class InterpolationError(InputError):
    pass


def _lookup(env: Mapping[str, str]) -> Lookup:
    return env.get


def interpolate(text: str, env: Mapping[str, str], where: str) -> tuple[str, tuple[Unset, ...]]:
    """One string with its variables replaced, and the variables that were not set."""
    unset: list[Unset] = []
    out, pos = _expand(text, 0, _lookup(env), where, unset, closing=False)
    assert pos == len(text)
    return out, tuple(unset)


def _expand(
    text: str, pos: int, lookup: Lookup, where: str, unset: list[Unset], closing: bool
) -> tuple[str, int]:
    """Expand from pos to the end, or (closing) to the `}` that ends a braced word."""
    out: list[str] = []
    while pos < len(text):
        ch = text[pos]
        if closing and ch == "}":
            return "".join(out), pos
        if ch != "$":
            out.append(ch)
            pos += 1
            continue
        nxt = text[pos + 1 : pos + 2]
        if nxt == "$":
            out.append("$")
            pos += 2
        elif nxt == "{":
            value, pos = _braced(text, pos + 2, lookup, where, unset)
            out.append(value)
        else:
            m = NAME.match(text, pos + 1)
            if not m:
                raise InterpolationError(
                    f"{where}: {text!r}: a '$' must start a variable ($VAR or ${{VAR}}); "
                    "write $$ for a literal $"
                )
            found = lookup(m.group())
            if found is None:
                unset.append(Unset(m.group(), where))
            out.append(found or "")
            pos = m.end()
    if closing:
        raise InterpolationError(f"{where}: {text!r}: a '${{' has no closing '}}'")
    return "".join(out), pos


def _braced(text: str, pos: int, lookup: Lookup, where: str, unset: list[Unset]) -> tuple[str, int]:
    m = NAME.match(text, pos)
    if not m:
        raise InterpolationError(
            f"{where}: {text!r}: '${{' must be followed by a variable name; write $$ for a literal $"
        )
    name, pos = m.group(), m.end()
    value = lookup(name)
    if text[pos : pos + 1] == "}":
        if value is None:
            unset.append(Unset(name, where))
        return value or "", pos + 1
    op = next((o for o in OPERATORS if text.startswith(o, pos)), None)
    if pos >= len(text):
        raise InterpolationError(f"{where}: {text!r}: a '${{' has no closing '}}'")
    if op is None:
        raise InterpolationError(
            f"{where}: {text!r}: ${{{name}...}} has an unknown operator; "
            "use :- - :? ? :+ or +, or write $$ for a literal $"
        )
    # the word is expanded only where it is used, as in a shell, so its unset names count then
    inner: list[Unset] = []
    word, end = _expand(text, pos + len(op), lookup, where, inner, closing=True)
    empty_counts = op.startswith(":")
    missing = value is None or (empty_counts and value == "")
    if op.endswith("-"):
        result = word if missing else str(value)
        used_word = missing
    elif op.endswith("?"):
        if missing:
            reason = word or ("is not set" if value is None else "is empty")
            raise InterpolationError(
                f"{where}: required variable {name} is missing a value: {reason}; "
                "set it in the environment or in the .env file"
            )
        result, used_word = str(value), False
    else:
        result, used_word = ("" if missing else word), not missing
    if used_word:
        unset.extend(inner)
    return result, end + 1


def interpolate_tree(value: Any, env: Mapping[str, str], where: str, unset: list[Unset]) -> Any:
    """Every string value of a parsed compose document, keys left as they are."""
    if isinstance(value, str):
        out, missing = interpolate(value, env, where)
        unset.extend(missing)
        return out
    if isinstance(value, dict):
        return {
            k: interpolate_tree(v, env, f"{where}.{k}" if where else str(k), unset)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [interpolate_tree(v, env, f"{where}[{i}]", unset) for i, v in enumerate(value)]
    return value


# --- the .env and env_file format -----------------------------------------------------------

_LINE_KEY = re.compile(r"\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.-]*)\s*(=?)")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "$": "$$"}


def parse_env_file(
    text: str, env: Mapping[str, str], where: str
) -> tuple[dict[str, str], tuple[Unset, ...]]:
    """KEY=VALUE lines (`export`, comments, '...' literal, "..." with escapes, over lines).

    Unquoted and double-quoted values are interpolated with the file's earlier keys and then
    `env`, which wins, as in docker compose.
    """
    values: dict[str, str] = {}
    unset: list[Unset] = []
    pos, line_no = 0, 1
    while pos < len(text):
        end = text.find("\n", pos)
        line = text[pos : end if end >= 0 else len(text)]
        stripped = line.strip()
        here = f"{where}:{line_no}"
        if not stripped or stripped.startswith("#"):
            pos, line_no = (end + 1 if end >= 0 else len(text)), line_no + 1
            continue
        m = _LINE_KEY.match(text, pos)
        if not m or (not m.group(2) and text[m.end() : m.end() + 1] not in ("", "\n", "\r")):
            raise InputError(f"{here}: {stripped[:40]!r} is not KEY=VALUE")
        key, start = m.group(1), m.end()
        if not m.group(2):  # a bare KEY takes its value from the environment
            if key in env:
                values[key] = env[key]
            pos, line_no = (end + 1 if end >= 0 else len(text)), line_no + 1
            continue
        while text[start : start + 1] in (" ", "\t"):
            start += 1
        quote = text[start : start + 1]
        scope = {**values, **env}
        if quote in ("'", '"'):
            close = start + 1
            while True:
                close = text.find(quote, close)
                if close < 0:
                    raise InputError(f"{here}: {key}: the {quote} quote is not closed")
                if quote == "'" or text[close - 1] != "\\" or text[close - 2 : close] == "\\\\":
                    break
                close += 1
            raw = text[start + 1 : close]
            line_no += raw.count("\n")
            if quote == "'":
                value = raw
            else:
                raw = re.sub(r"\\(.)", lambda e: _ESCAPES.get(e.group(1), "\\" + e.group(1)), raw)
                value, missing = interpolate(raw, scope, f"{here}: {key}")
                unset.extend(missing)
            end = text.find("\n", close)
        else:
            stop = end if end >= 0 else len(text)
            raw = re.split(r"\s+#", text[start:stop], maxsplit=1)[0].strip()
            value, missing = interpolate(raw, scope, f"{here}: {key}")
            unset.extend(missing)
        values[key] = value
        pos, line_no = (end + 1 if end >= 0 else len(text)), line_no + 1
    return values, tuple(unset)
