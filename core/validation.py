"""The words every request check is written in: bounded text, bounded lists, bounded
JSON. Nothing here knows HTTP, so the API handlers and the services below them
(sessions, folders) speak the same rules.

Every failure is a 400 ``invalid-api-params`` whose detail names the field, and for a
bound the limit (and the ``[limits]`` key that sets it, when there is one). Only a body
too large as a whole is a 413 (`crucible.api.body`); docs/security.md explains the split.

The rules and why:

* Text must encode as UTF-8. JSON's ``"\\ud800"`` decodes to a Python string holding a
  lone surrogate, which neither PostgreSQL nor the agent's framing can carry; such a
  value is refused wherever it appears in a body (`check_json_tree`).
* NUL is refused in every value that becomes a database column, a path, an environment
  entry or a command line (C strings end at NUL; PostgreSQL ``text`` cannot hold it).
  Code and input text may carry it: they are the program's data, passed on untouched.
* Sizes are counted in UTF-8 bytes, what the value costs on the wire and on disk.
"""

from __future__ import annotations

import json
import re
from typing import Any

from crucible import errors


def utf8_size(value: str, field: str) -> int:
    """Bytes of `value` in UTF-8; 400 when it holds a lone surrogate."""
    try:
        return len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise errors.InvalidAPIParameters(
            f"{_name(field)} is not valid Unicode (it holds an unpaired surrogate)."
        ) from None


def text(
    value: object,
    field: str,
    *,
    max_bytes: int,
    limit_key: str | None = None,
    allow_nul: bool = False,
    allow_empty: bool = True,
) -> str:
    """`value` as a string of at most `max_bytes` UTF-8 bytes, else 400.

    `limit_key` names the ``[limits]`` setting behind `max_bytes` in the detail.
    """
    if not isinstance(value, str):
        raise errors.InvalidAPIParameters(f"{_name(field)} must be a string.")
    if not value and not allow_empty:
        raise errors.InvalidAPIParameters(f"{_name(field)} must not be empty.")
    if not allow_nul and "\x00" in value:
        raise errors.InvalidAPIParameters(f"{_name(field)} must not contain NUL characters.")
    size = utf8_size(value, field)
    if size > max_bytes:
        raise errors.InvalidAPIParameters(
            f"{_name(field)} is {size} bytes long; the limit is {max_bytes}{_key(limit_key)}."
        )
    return value


def bounded_list(
    value: object,
    field: str,
    *,
    max_items: int,
    limit_key: str | None = None,
    allow_empty: bool = False,
) -> list[Any]:
    """`value` as a list of at most `max_items` entries (non-empty unless allowed), else 400.

    Checked before any entry is looked at, so a huge list costs nothing but its parsing.
    """
    if not isinstance(value, list) or (not value and not allow_empty):
        qualifier = "a list" if allow_empty else "a non-empty list"
        raise errors.InvalidAPIParameters(f"{_name(field)} must be {qualifier}.")
    if len(value) > max_items:
        raise errors.InvalidAPIParameters(
            f"{_name(field)} has {len(value)} entries; the limit is {max_items}"
            f"{_key(limit_key)}."
        )
    return value


def check_json_tree(
    value: Any, *, max_depth: int, where: str = "the body", check_strings: bool = True
) -> None:
    """Refuse arrays and objects nested deeper than `max_depth`, and (`check_strings`)
    any string or key that is not valid Unicode. Iterative, so no input can exhaust the
    stack."""
    if isinstance(value, str):
        if check_strings:
            utf8_size(value, f"A string in {where}")
        return
    stack: list[tuple[Any, int]] = [(value, 1)] if isinstance(value, (dict, list)) else []
    while stack:
        node, depth = stack.pop()
        if depth > max_depth:
            raise errors.InvalidAPIParameters(
                f"{where.capitalize()} is nested deeper than {max_depth} levels"
                f"{_key('max_json_depth')}."
            )
        children = node.values() if isinstance(node, dict) else node
        if check_strings:
            for child in (*node, *children) if isinstance(node, dict) else children:
                if isinstance(child, str):
                    utf8_size(child, f"A string in {where}")
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))


#: A JSON escape of a UTF-16 surrogate: the only way a JSON text can carry a lone one
#: (the UTF-8 decoder refuses encoded surrogates). Paired ones match too; that only
#: means the strings get looked at.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE_ESCAPE_BYTES = re.compile(_SURROGATE_ESCAPE.pattern.encode())


def parse_json(raw: bytes | str, *, max_depth: int, where: str = "the body") -> Any:
    """JSON text → a value that `check_json_tree` accepts; 400 (`InvalidAPIParameters`)
    for anything else, the cause in the detail."""
    subject = where.capitalize()
    try:
        value = json.loads(raw)
    except RecursionError:
        # Deep nesting exhausts the parser's stack; that is bad input, not a server fault.
        raise errors.InvalidAPIParameters(f"{subject} is nested too deeply.") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise errors.InvalidAPIParameters(f"{subject} is not valid JSON: {exc}.") from None
    except ValueError as exc:
        # E.g. an integer of more digits than Python converts (sys.get_int_max_str_digits).
        raise errors.InvalidAPIParameters(f"{subject} holds an unreadable value: {exc}.") from None
    # The walk costs a Python step per value, so it runs only when the text could hold
    # what it looks for: more brackets than the depth allows, or a surrogate escape.
    if isinstance(raw, str):
        brackets = raw.count("[") + raw.count("{")
        surrogates = _SURROGATE_ESCAPE.search(raw) is not None
    else:
        brackets = raw.count(b"[") + raw.count(b"{")
        surrogates = _SURROGATE_ESCAPE_BYTES.search(raw) is not None
    if brackets > max_depth or surrogates:
        check_json_tree(value, max_depth=max_depth, where=where, check_strings=surrogates)
    return value


def _name(field: str) -> str:
    # Field paths are quoted ('config.environ'); descriptions ("A string in ...") are not.
    return field if " " in field else f"'{field}'"


def _key(limit_key: str | None) -> str:
    return f" (limits.{limit_key})" if limit_key else ""
