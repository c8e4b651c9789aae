"""JSON that comes from outside this process (stdin, the state folder, a server's output).

Python's json module accepts more than any builder or switcher writes, and fails on some of it
with errors that are not JSONDecodeError: NaN and Infinity, 1e999, integers of thousands of
digits (ValueError past `int` max str digits), nesting a thousand deep (RecursionError), a key
given twice (the last one silently wins), lone surrogates (that fail later, when written back).
Every reader goes through `loads`, which refuses all of them with one BadInput line.
"""

from __future__ import annotations

import json
import math
from typing import Any, overload

from .errors import BadInput

MAX_DEPTH = 64
MAX_INT_DIGITS = 19  # every count, size, time and generation fits in a signed 64-bit integer
DEFAULT_LIMIT = 16 * 1024 * 1024
_TYPE_NAMES = {
    dict: "a JSON object",
    list: "a JSON list",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "true or false",
    type(None): "null",
}


class JsonRefused(BadInput, ValueError):
    """Input that is not the JSON a bundle tool writes (exit 2); also a ValueError for callers
    that treat any unreadable JSON alike."""


class _Refusal(Exception):
    """Raised inside the parser's hooks; `loads` turns it into JsonRefused."""


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise _Refusal(f"an integer longer than {MAX_INT_DIGITS} digits")
    return int(text)


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Refusal("a number too large for a float")
    return value


def _constant(name: str) -> Any:
    raise _Refusal(f"{name} (not JSON)")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise _Refusal(f"the key {key[:60]!r} appears twice in one object")
        obj[key] = value
    return obj


def _check_tree(value: Any) -> None:
    """Refuse nesting deeper than MAX_DEPTH and strings that cannot be written as UTF-8."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if not item.isascii():
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    raise _Refusal("a string with a lone surrogate (\\ud800-\\udfff)") from None
        elif isinstance(item, (dict, list)):
            if depth > MAX_DEPTH:
                raise _Refusal(f"nested deeper than {MAX_DEPTH} levels")
            children = [*item, *item.values()] if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)


# a caller that keeps the default `expect` gets a JSON object, and its type says so
@overload
def loads(data: bytes | str, where: str, hint: str, *, limit: int = ...) -> dict[str, Any]: ...
@overload
def loads(
    data: bytes | str,
    where: str,
    hint: str,
    *,
    expect: type | tuple[type, ...] | None,
    limit: int = ...,
) -> Any: ...
def loads(
    data: bytes | str,
    where: str,
    hint: str,
    *,
    expect: type | tuple[type, ...] | None = dict,
    limit: int = DEFAULT_LIMIT,
) -> Any:
    """Parse `data`; JsonRefused `"{where}: {problem}{hint}"` unless it is plain JSON of the
    `expect`ed top-level type, at most `limit` bytes. The message never quotes a value."""
    hint = f"; {hint}" if hint else ""
    if len(data) > limit:
        raise JsonRefused(f"{where}: over {limit} bytes{hint}")
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        value = json.loads(
            text,
            parse_int=_int,
            parse_float=_float,
            parse_constant=_constant,
            object_pairs_hook=_object,
        )
        _check_tree(value)
    except UnicodeDecodeError:
        raise JsonRefused(f"{where}: not valid JSON: not UTF-8 text{hint}") from None
    except _Refusal as exc:
        raise JsonRefused(f"{where}: not valid JSON: {exc}{hint}") from None
    except RecursionError:
        raise JsonRefused(
            f"{where}: not valid JSON: nested deeper than {MAX_DEPTH} levels{hint}"
        ) from None
    except json.JSONDecodeError as exc:
        raise JsonRefused(f"{where}: not valid JSON ({exc}){hint}") from None
    if expect is not None and not isinstance(value, expect):
        wanted = expect if isinstance(expect, tuple) else (expect,)
        names = " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in wanted)
        got = _TYPE_NAMES.get(type(value), type(value).__name__)
        raise JsonRefused(f"{where}: expected {names}, got {got}{hint}")
    return value
