"""What a client may ask of sessions (spec 4.2-4.7), checked before the database, an
agent or Docker sees any of it.

Each function takes the raw JSON value and returns it checked (and, for options, reduced
to what the runner reads), or raises 400 ``invalid-api-params`` naming the field.
"""

from __future__ import annotations

import re
from typing import Any

from crucible import errors
from crucible.config import LimitsConfig
from crucible.validation import text

#: clientSessionToken (spec 4.2): the official client checks 4-64 characters.
TOKEN_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{2,62}[A-Za-z0-9_]")
TOKEN_RULE = "4-64 letters, digits, '_', '.' or '-', not starting or ending with '.' or '-'"
#: Environment variable names: the POSIX portable set (letters, digits, '_', no leading
#: digit), which every shell and libc accepts; '=' and NUL can never be part of one.
ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: Run ids the client may choose (it normally echoes the server's 32 hex digits).
RUN_ID_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
#: ``lang`` is an image name or alias (``python:3.6-ubuntu``, ``lablup/python:3.6``).
MAX_LANG_BYTES = 256
#: The ``kernels.tag`` column's own bound.
MAX_TAG_CHARS = 64
#: The batch options the runner reads; ``buildLog`` and unknown keys are dropped.
BATCH_STEPS = ("clean", "build", "exec")
#: Completion context (spec 4.7): cursor position and the text around it.
COMPLETE_INTS = ("row", "col")
COMPLETE_TEXTS = ("line", "post")
#: Entries an ``options`` object may have at all (the client sends four).
MAX_OPTION_ENTRIES = 16
#: Cursor positions past this are nonsense (and would not fit the runner's ints).
MAX_POSITION = 2**31 - 1


def check_token(value: object, field: str = "clientSessionToken") -> str:
    """A session token, as created or as named in a URL (``/kernel/<token>``)."""
    if not isinstance(value, str) or not TOKEN_RE.fullmatch(value):
        raise errors.InvalidAPIParameters(f"'{field}' must be {TOKEN_RULE}.")
    return value


def check_lang(value: object) -> str:
    lang = text(value, "lang", max_bytes=MAX_LANG_BYTES, allow_empty=False)
    if not lang.isprintable():
        raise errors.InvalidAPIParameters("'lang' must not contain control characters.")
    return lang


def check_tag(value: object) -> str | None:
    if value is None:
        return None
    tag = text(value, "tag", max_bytes=4 * MAX_TAG_CHARS)
    if len(tag) > MAX_TAG_CHARS:
        raise errors.InvalidAPIParameters(f"'tag' must be at most {MAX_TAG_CHARS} characters.")
    return tag


def check_environ(value: object, limits: LimitsConfig) -> dict[str, str]:
    """``config.environ``: names a shell accepts, values a C string can hold, bounded."""
    field = "config.environ"
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise errors.InvalidAPIParameters(f"'{field}' must map names to strings.")
    if len(value) > limits.max_environ_entries:
        raise errors.InvalidAPIParameters(
            f"'{field}' has {len(value)} entries; the limit is {limits.max_environ_entries} "
            "(limits.max_environ_entries)."
        )
    total = 0
    for name, entry in value.items():
        text(
            name,
            f"{field} name",
            max_bytes=limits.max_environ_name_bytes,
            limit_key="max_environ_name_bytes",
        )
        if not ENV_NAME_RE.fullmatch(name):
            raise errors.InvalidAPIParameters(
                f"{name[:64]!r} in '{field}' is not a variable name: letters, digits and "
                "'_', not starting with a digit."
            )
        text(
            entry,
            f"{field}.{name}",
            max_bytes=limits.max_environ_value_bytes,
            limit_key="max_environ_value_bytes",
        )
        total += len(name) + len(entry.encode("utf-8"))
    if total > limits.max_environ_bytes:
        raise errors.InvalidAPIParameters(
            f"'{field}' is {total} bytes long; the limit is {limits.max_environ_bytes} "
            "(limits.max_environ_bytes)."
        )
    return dict(value)


def check_code(value: object, limits: LimitsConfig, field: str = "code") -> str:
    """Code or input text: the program's own data, so NUL passes; null means empty."""
    if value is None:
        return ""
    return text(
        value, field, max_bytes=limits.max_code_bytes, limit_key="max_code_bytes", allow_nul=True
    )


def check_run_id(value: object) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not RUN_ID_RE.fullmatch(value):
        raise errors.InvalidAPIParameters(
            "'runId' must be 1-64 letters, digits, '_', '.', ':' or '-'."
        )
    return value


def _options(value: object) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise errors.InvalidAPIParameters("'options' must be an object.")
    if len(value) > MAX_OPTION_ENTRIES:
        raise errors.InvalidAPIParameters(
            f"'options' has {len(value)} entries; the limit is {MAX_OPTION_ENTRIES}."
        )
    return value


def _option_text(options: dict[str, Any], key: str, limits: LimitsConfig) -> str | None:
    value = options.get(key)
    if value is None:
        return None
    return text(
        value,
        f"options.{key}",
        max_bytes=limits.max_option_bytes,
        limit_key="max_option_bytes",
    )


def batch_options(value: object, limits: LimitsConfig) -> dict[str, str | None]:
    """``clean``/``build``/``exec`` shell commands (null or "" skip, "*" the default)."""
    options = _options(value)
    return {step: _option_text(options, step, limits) for step in BATCH_STEPS if step in options}


def complete_options(value: object, limits: LimitsConfig) -> dict[str, Any]:
    """The cursor context the 18.12 client sends with a completion request."""
    options = _options(value)
    checked: dict[str, Any] = {}
    for key in COMPLETE_INTS:
        number = options.get(key)
        if number is None:
            continue
        if (
            isinstance(number, bool)
            or not isinstance(number, int)
            or not (0 <= number <= MAX_POSITION)
        ):
            raise errors.InvalidAPIParameters(
                f"'options.{key}' must be a whole number from 0 to {MAX_POSITION}."
            )
        checked[key] = number
    for key in COMPLETE_TEXTS:
        if key in options:
            checked[key] = _option_text(options, key, limits) or ""
    return checked
