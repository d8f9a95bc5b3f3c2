"""The error reply: how an agent says a call failed, and the kinds it may give.

An agent answers a call it refuses or cannot carry out with a `CallFailure` instead of
the call's reply. Its `kind` decides what the manager makes of it (docs/internals.md):
the ``agent-*`` kinds reach the client as the spec's ``agent-details`` (spec 1.7),
``kernel-not-found`` ends the session, the file kinds become 400 or 404, and
``message-too-large`` a 413 (the request was larger than the link carries).
"""

from __future__ import annotations

import enum

import attrs


class ErrorKind(enum.StrEnum):
    """Every kind of failure a reply or a refused message may carry."""

    #: The agent failed (a Docker error, a bug, an answer it could not send).
    AGENT_FAILURE = "agent-failure"
    #: The call was not one the agent takes: unknown method, unknown or mistyped fields,
    #: a value out of range.
    INVALID_INPUT = "agent-invalid-input"
    #: No such live kernel on this agent.
    KERNEL_NOT_FOUND = "kernel-not-found"
    #: The kernel's run queue is full (the manager answers 429).
    QUEUE_FULL = "execution-queue-full"
    #: Session files (``crucible.agent.files``): a path the agent refuses, a limit
    #: passed, a path that is not there.
    INVALID_PATH = "invalid-path"
    TOO_LARGE = "too-large"
    FILE_NOT_FOUND = "file-not-found"
    #: ``start_service``: the kernel's image declares no such app (or not one to start);
    #: the app did not come up (exited, or did not accept in time).
    APP_NOT_FOUND = "app-not-found"
    SERVICE_START_FAILED = "service-start-failed"
    #: Framing refusals (`crucible.protocol.framing`): a message over the receiver's
    #: limit, one that is no JSON object, one too many in flight at once.
    MESSAGE_TOO_LARGE = "message-too-large"
    MALFORMED_MESSAGE = "malformed-message"
    LINK_BUSY = "link-busy"
    #: Streams (`crucible.protocol.streams`): the service did not accept the
    #: connection in time; the kernel has as many streams open as it may.
    SERVICE_REFUSED = "service-refused"
    TOO_MANY_STREAMS = "too-many-streams"


@attrs.frozen
class CallFailure:
    """The body of an error reply."""

    kind: ErrorKind
    title: str
    #: The exception behind an ``agent-failure``, one line (``ValueError: ...``).
    exception: str | None = None
