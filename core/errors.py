"""RFC 7807 problem types (spec 1.7) as one class tree, and the startup error.

Raise a subclass at the edge (`raise KernelNotFound(...) from exc`); the single error
handler in `crucible.api.problems` renders it as `application/problem+json`.
`StartupError` is no problem document: the daemons raise it, and the command line shows
it to the operator.
"""

from __future__ import annotations

from typing import Any, ClassVar

PROBLEM_TYPE_PREFIX = "https://api.backend.ai/probs/"


class ProblemError(Exception):
    """An error the API reports to the client as a problem document."""

    status: ClassVar[int] = 500
    type_suffix: ClassVar[str] = "internal-server-error"
    title: ClassVar[str] = "Internal server error."

    def __init__(self, detail: str | None = None, *, data: Any = None, **extra: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail
        self.data = data
        self.extra = extra

    @property
    def type_uri(self) -> str:
        return PROBLEM_TYPE_PREFIX + self.type_suffix

    def to_problem(self) -> dict[str, Any]:
        body: dict[str, Any] = {"type": self.type_uri, "title": self.title}
        body["detail"] = self.detail if self.detail is not None else self.title
        if self.data is not None:
            body["data"] = self.data
        body.update(self.extra)
        return body

    def headers(self) -> dict[str, str]:
        """Extra response headers this problem carries (e.g. rate-limit headers)."""
        return {}


# -- 400 ---------------------------------------------------------------------------------


class GenericBadRequest(ProblemError):
    status = 400
    type_suffix = "generic-bad-request"
    title = "Bad request."


class InvalidAPIParameters(ProblemError):
    status = 400
    type_suffix = "invalid-api-params"
    title = "Missing or invalid API parameters."


class UnstorableValue(InvalidAPIParameters):
    """A value the database refused as data (a NUL, a character it cannot encode, a
    number out of range, a malformed literal...). `crucible.db` raises it in place of
    the driver's error: the request is at fault, and it is a 400, never a 500. The
    edge checks (`crucible.validation`) should have caught it first; this is the net."""


class InvalidAuthParameters(ProblemError):
    status = 400
    type_suffix = "invalid-auth-params"
    title = "Missing or invalid authorization parameters."


class KernelAlreadyExists(ProblemError):
    status = 400
    type_suffix = "kernel-already-exists"
    title = "The session already exists with a different image."


class VFolderAlreadyExists(ProblemError):
    status = 400
    type_suffix = "vfolder-already-exists"
    title = "A virtual folder with the same name already exists."


class VFolderCreationFailed(ProblemError):
    status = 400
    type_suffix = "vfolder-creation-failed"
    title = "Virtual folder creation failed."


# -- 401 / 404 / 405 / 412 / 413 / 429 ---------------------------------------------------


class AuthFailed(ProblemError):
    status = 401
    type_suffix = "auth-failed"
    title = "Credential/signature mismatch."


class GenericNotFound(ProblemError):
    status = 404
    type_suffix = "generic-not-found"
    title = "Unknown URL path."


class KernelNotFound(ProblemError):
    status = 404
    type_suffix = "kernel-not-found"
    title = "No such kernel."


class ImageNotFound(ProblemError):
    status = 404
    type_suffix = "image-not-found"
    title = "No such environment image."


class VFolderNotFound(ProblemError):
    status = 404
    type_suffix = "vfolder-not-found"
    title = "No such virtual folder."


class AppNotFound(ProblemError):
    status = 404
    type_suffix = "app-not-found"
    title = "No such app service provided by the session."


class InstanceNotFound(ProblemError):
    status = 404
    type_suffix = "instance-not-found"
    title = "No such instance."


class MethodNotAllowed(ProblemError):
    status = 405
    type_suffix = "method-not-allowed"
    title = "Method not allowed."

    def __init__(self, detail: str | None = None, *, allowed: list[str] | None = None) -> None:
        super().__init__(detail)
        self.allowed = sorted(allowed or [])

    def headers(self) -> dict[str, str]:
        return {"Allow": ", ".join(self.allowed)} if self.allowed else {}


class QuotaExceeded(ProblemError):
    status = 412
    type_suffix = "quota-exceeded"
    title = "You have reached your resource limit."


class RequestTooLarge(ProblemError):
    status = 413
    type_suffix = "request-too-large"
    title = "Request body too large."


class RateLimitExceeded(ProblemError):
    status = 429
    type_suffix = "rate-limit-exceeded"
    title = "Rate limit exceeded."

    def __init__(self, detail: str | None = None, *, limit: int, window: int) -> None:
        super().__init__(detail)
        self.limit = limit
        self.window = window

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Window": str(self.window),
        }


class ExecutionQueueFull(ProblemError):
    """A session holds as many queued runs as its agent allows (``agent.run_queue_*``)."""

    status = 429
    type_suffix = "execution-queue-full"
    title = "Too many runs are queued in this session."


# -- 5xx ---------------------------------------------------------------------------------


class InternalServerError(ProblemError):
    status = 500
    type_suffix = "internal-server-error"
    title = "Internal server error."


class GeneralError(ProblemError):
    status = 500
    type_suffix = "general-error"
    title = "General backend failure."


class AgentError(ProblemError):
    """A failure on the agent side; carries `agent-details` (spec 1.7)."""

    status = 500
    agent_error_type: ClassVar[str] = "agent-failure"

    def __init__(
        self,
        detail: str | None = None,
        *,
        agent_error_title: str | None = None,
        exception: str | None = None,
        agent_error_type: str | None = None,
    ) -> None:
        details: dict[str, Any] = {
            "type": PROBLEM_TYPE_PREFIX + (agent_error_type or self.agent_error_type),
            "title": agent_error_title,
        }
        if exception is not None:
            details["exception"] = exception
        super().__init__(detail, **{"agent-details": details})


class KernelCreationFailed(AgentError):
    type_suffix = "kernel-creation-failed"
    title = "Kernel creation failed."


class KernelDestructionFailed(AgentError):
    type_suffix = "kernel-destruction-failed"
    title = "Kernel destruction failed."


class KernelRestartFailed(AgentError):
    type_suffix = "kernel-restart-failed"
    title = "Kernel restart failed."


class KernelExecutionFailed(AgentError):
    type_suffix = "kernel-execution-failed"
    title = "Executing user code failed."


class ServiceStartFailed(AgentError):
    """A session's app (spec 9 service ports) did not come up (spec 5.5: a 500)."""

    type_suffix = "service-start-failed"
    title = "The app did not start in the session."


class ServiceUnavailable(ProblemError):
    status = 503
    type_suffix = "service-unavailable"
    title = "Service unavailable."


class InstanceNotAvailable(ProblemError):
    status = 503
    type_suffix = "instance-not-available"
    title = "No agent has enough free resources for the session."


class ServerFrozen(ProblemError):
    status = 503
    type_suffix = "server-frozen"
    title = "The server is frozen due to maintenance."


class NotImplementedYet(ProblemError):
    status = 503
    type_suffix = "not-implemented"
    title = "This API is not implemented."


# -- not a problem: the operator's ------------------------------------------------------


class StartupError(Exception):
    """Something the operator must fix before Crucible can start; shown without traceback."""
