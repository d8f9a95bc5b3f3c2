"""Messages ↔ JSON objects: the one converter both ends use, and the envelopes.

Structuring is strict, so that a message means what it says or is refused: nothing is
coerced (``"3"`` is no int, ``1`` no bool, a string no list), a float must be finite,
a required field must be there and an unknown one is refused. What fails raises
`ProtocolError` with a one-line reason that names the field (``$.mounts[0].source:
expected a string, got an integer``); the receiver fails that one call (or drops that
one report) and the link goes on.

The envelopes (docs/internals.md)::

    {"type": "call", "id": N, "method": "create_kernel", "params": {...}}   manager → agent
    {"type": "result", "id": N, "result": {...}}                            agent → manager
    {"type": "error", "id": N, "error": {"kind", "title", "exception"}}      agent → manager
    {"type": "heartbeat", "agent": {...}, "kernels": [...]}                 agent → manager
    {"type": "event", "name": "kernel_terminated", ...the event's fields}   agent → manager
    {"type": "stream", "op": "data", "stream": N, ...}                      both ways

A result's shape is the reply class of its call, which only the caller knows: it stays
raw in `IncomingResult` until `read_result` structures it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal, TypeVar, get_args, get_origin

import attrs
import cattrs
from cattrs.cols import (
    homogenous_tuple_structure_factory,
    is_mapping,
    is_sequence,
    list_structure_factory,
    mapping_structure_factory,
)
from cattrs.errors import CattrsError, ForbiddenExtraKeysError
from cattrs.gen import make_dict_structure_fn

from crucible.protocol.calls import CALLS, AgentCall, reply_type
from crucible.protocol.failures import CallFailure
from crucible.protocol.reports import EVENTS, AgentEvent, Heartbeat
from crucible.protocol.streams import STREAM_OPS, StreamMessage, op_of

T = TypeVar("T")

#: Problems listed in one `ProtocolError` at most, and its length: a reason travels
#: back in an error reply, whatever the message that caused it held.
MAX_PROBLEMS = 5
MAX_REASON_CHARS = 500


class ProtocolError(ValueError):
    """A message that does not fit this version of the protocol.

    `call_id` is the call it belongs to when that much could be read: the receiver
    then fails that call; otherwise it drops the message.
    """

    def __init__(self, reason: str, call_id: int | None = None) -> None:
        super().__init__(reason[:MAX_REASON_CHARS])
        self.call_id = call_id


# -- the converter --------------------------------------------------------------------------

_JSON_NAMES: dict[type, str] = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "a boolean",
    list: "a list",
    dict: "an object",
    type(None): "null",
}


def _json_name(value: object) -> str:
    return _JSON_NAMES.get(type(value), type(value).__name__)


def _mismatch(wanted: type, value: object) -> ValueError:
    return ValueError(f"expected {_JSON_NAMES[wanted]}, got {_json_name(value)}")


def _scalar(value: object, wanted: type) -> object:
    """A JSON scalar as `wanted` (str, int, float, bool or a subclass such as a StrEnum):
    of exactly that JSON type, never converted from another."""
    base = next(kind for kind in (bool, int, float, str) if issubclass(wanted, kind))
    # bool is an int to Python, never to the protocol; an int is a valid float.
    accepted = (int, float) if base is float else (base,)
    if not isinstance(value, accepted) or (isinstance(value, bool) and base is not bool):
        raise _mismatch(base, value)
    if base is float and not math.isfinite(value):  # type: ignore[arg-type]
        raise ValueError("expected a finite number")
    return wanted(value)


_LITERAL: Any = Literal


def _literal(value: object, wanted: Any) -> object:
    choices = get_args(wanted)
    if not any(type(value) is type(choice) and value == choice for choice in choices):
        raise ValueError("expected one of " + ", ".join(repr(choice) for choice in choices))
    return value


def _json_shaped(json_type: type, make: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A hook factory that refuses any value not of `json_type` (a dict where an object
    belongs, a list where a sequence does) before `make`'s hook reads it."""

    def factory(type_: Any) -> Any:
        inner = make(type_)

        def structure(value: object, _: object) -> object:
            if not isinstance(value, json_type):
                raise _mismatch(json_type, value)
            return inner(value, type_)

        return structure

    return factory


def _make_converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=True)
    for scalar in (str, int, float, bool):
        conv.register_structure_hook(scalar, _scalar)  # and their subclasses (StrEnum)
    conv.register_structure_hook_func(lambda type_: get_origin(type_) is _LITERAL, _literal)

    # cattrs' own hooks, behind a check of the JSON type: left alone, they would read a
    # string as a list of characters and fail on a list where an object belongs with
    # an AttributeError.
    def sequence(type_: Any) -> Any:
        if get_origin(type_) is tuple:
            return homogenous_tuple_structure_factory(type_, conv)
        return list_structure_factory(type_, conv)

    conv.register_structure_hook_factory(is_sequence, _json_shaped(list, sequence))
    conv.register_structure_hook_factory(
        is_mapping, _json_shaped(dict, lambda type_: mapping_structure_factory(type_, conv))
    )
    conv.register_structure_hook_factory(
        attrs.has,
        _json_shaped(
            dict, lambda cls: make_dict_structure_fn(cls, conv, _cattrs_forbid_extra_keys=True)
        ),
    )
    return conv


converter = _make_converter()


def _describe(exc: BaseException, type_: Any) -> str:
    if isinstance(exc, ForbiddenExtraKeysError):
        return "unknown field(s): " + ", ".join(sorted(exc.extra_fields))
    if isinstance(exc, KeyError):
        return "required field missing"
    if isinstance(exc, ValueError):
        return str(exc)
    return cattrs.v.format_exception(exc, type_)


def structure(data: object, cls: type[T], what: str, *, call_id: int | None = None) -> T:
    """`data` as a `cls`, or `ProtocolError` saying why not (in `what`: the method...)."""
    try:
        return converter.structure(data, cls)
    except cattrs.BaseValidationError as exc:
        problems = cattrs.transform_error(exc, path="$", format_exception=_describe)
    except (ValueError, TypeError, AttributeError, KeyError, CattrsError) as exc:
        problems = [f"{_describe(exc, cls)} @ $"]
    listed = [_flip(problem) for problem in problems[:MAX_PROBLEMS]]
    more = f" (and {len(problems) - MAX_PROBLEMS} more)" if len(problems) > MAX_PROBLEMS else ""
    raise ProtocolError(f"{what}: " + "; ".join(listed) + more, call_id)


def _flip(problem: str) -> str:
    """``text @ path`` → ``path: text``: the field first, as a reader looks for it."""
    text, _, path = problem.rpartition(" @ ")
    return f"{path}: {text}" if text else problem


def unstructure(obj: object) -> Any:
    return converter.unstructure(obj)


# -- envelopes: manager → agent -------------------------------------------------------------


@attrs.frozen
class IncomingCall:
    id: int
    call: AgentCall[Any]


def call_message(call_id: int, call: AgentCall[Any]) -> dict[str, Any]:
    return {"type": "call", "id": call_id, "method": call.method, "params": unstructure(call)}


def read_call(message: dict[str, Any]) -> IncomingCall:
    """A call from the manager; `ProtocolError` (with its id, when it has one) if the
    message is no call this agent knows, or its params do not fit."""
    if message.get("type") != "call":
        raise ProtocolError(f"a message of type {message.get('type')!r} (not a call)")
    call_id = message.get("id")
    if not isinstance(call_id, int) or isinstance(call_id, bool):
        raise ProtocolError("a call without an integer id")
    method = message.get("method")
    kind = CALLS.get(method) if isinstance(method, str) else None
    if kind is None:
        raise ProtocolError(f"unknown method {method!r}", call_id)
    call = structure(message.get("params"), kind, f"the {method} call's params", call_id=call_id)
    return IncomingCall(call_id, call)


# -- envelopes: agent → manager -------------------------------------------------------------


@attrs.frozen
class IncomingResult:
    id: int
    #: The reply as JSON; `read_result` structures it for the call it answers.
    result: object


@attrs.frozen
class IncomingError:
    id: int
    failure: CallFailure


FromAgent = IncomingResult | IncomingError | Heartbeat | AgentEvent | StreamMessage


def result_message(call_id: int, reply: object) -> dict[str, Any]:
    return {"type": "result", "id": call_id, "result": unstructure(reply)}


def error_message(call_id: int, failure: CallFailure) -> dict[str, Any]:
    return {"type": "error", "id": call_id, "error": unstructure(failure)}


def heartbeat_message(heartbeat: Heartbeat) -> dict[str, Any]:
    return {"type": "heartbeat", **unstructure(heartbeat)}


def event_message(event: AgentEvent) -> dict[str, Any]:
    return {"type": "event", "name": event.name, **unstructure(event)}


def read_from_agent(message: dict[str, Any]) -> FromAgent:
    """A message from an agent; `ProtocolError` (with the id of the call a bad reply
    answers, when it has one) for anything that does not fit."""
    kind = message.get("type")
    body = {key: value for key, value in message.items() if key != "type"}
    if kind in ("result", "error"):
        call_id = body.get("id")
        if not isinstance(call_id, int) or isinstance(call_id, bool):
            raise ProtocolError(f"a reply of type {kind} without an integer id")
        if set(body) != {"id", kind}:
            raise ProtocolError(f"a reply with the fields {sorted(body)}", call_id)
        if kind == "result":
            return IncomingResult(call_id, body["result"])
        failure = structure(body["error"], CallFailure, "an error reply", call_id=call_id)
        return IncomingError(call_id, failure)
    if kind == "stream":
        return read_stream(message)
    if kind == "heartbeat":
        return structure(body, Heartbeat, "a heartbeat")
    if kind == "event":
        name = body.pop("name", None)
        event = EVENTS.get(name) if isinstance(name, str) else None
        if event is None:
            raise ProtocolError(f"an event of unknown name {name!r}")
        return structure(body, event, f"a {name} event")
    raise ProtocolError(f"a message of type {kind!r}")


def read_result(result: IncomingResult, call: AgentCall[T]) -> T:
    """The reply to `call` that `result` carries; `ProtocolError` if it does not fit."""
    return structure(result.result, reply_type(call), f"the reply to {call.method}")


# -- envelopes: streams, both ways ----------------------------------------------------------


def stream_message(message: StreamMessage) -> dict[str, Any]:
    return {"type": "stream", "op": op_of(message), **unstructure(message)}


def is_stream(message: dict[str, Any]) -> bool:
    return message.get("type") == "stream"


def read_stream(message: dict[str, Any]) -> StreamMessage:
    """A stream message (either way); `ProtocolError` for one that does not fit."""
    body = {key: value for key, value in message.items() if key not in ("type", "op")}
    op = message.get("op")
    cls = STREAM_OPS.get(op) if isinstance(op, str) else None
    if cls is None:
        raise ProtocolError(f"a stream message of unknown op {op!r}")
    return structure(body, cls, f"a stream {op} message")
