"""Spec 1.7: every problem type renders with type, title and detail."""

from __future__ import annotations

import json

import pytest

from crucible import errors

ALL_PROBLEMS = [
    cls for cls in vars(errors).values()
    if isinstance(cls, type) and issubclass(cls, errors.ProblemError)
    and cls not in (errors.ProblemError, errors.AgentError)
]

CANONICAL = {
    "generic-bad-request": 400, "invalid-api-params": 400, "invalid-auth-params": 400,
    "auth-failed": 401, "generic-not-found": 404, "kernel-not-found": 404,
    "image-not-found": 404, "vfolder-not-found": 404, "app-not-found": 404,
    "instance-not-found": 404, "method-not-allowed": 405, "kernel-already-exists": 400,
    "vfolder-already-exists": 400, "vfolder-creation-failed": 400, "quota-exceeded": 412,
    "rate-limit-exceeded": 429, "internal-server-error": 500, "general-error": 500,
    "kernel-creation-failed": 500, "kernel-destruction-failed": 500,
    "kernel-restart-failed": 500, "kernel-execution-failed": 500,
    "instance-not-available": 503, "server-frozen": 503, "service-unavailable": 503,
    "not-implemented": 503,
}


def make(cls: type[errors.ProblemError]) -> errors.ProblemError:
    if cls is errors.RateLimitExceeded:
        return cls(limit=10, window=900)
    return cls()


def test_every_canonical_type_has_a_class() -> None:
    found = {cls.type_suffix: cls.status for cls in ALL_PROBLEMS}
    for suffix, status in CANONICAL.items():
        assert found.get(suffix) == status, suffix


@pytest.mark.parametrize("cls", ALL_PROBLEMS, ids=lambda c: c.__name__)
def test_problem_document(cls: type[errors.ProblemError]) -> None:
    problem = make(cls)
    body = json.loads(json.dumps(problem.to_problem()))
    assert body["type"] == "https://api.backend.ai/probs/" + cls.type_suffix
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["detail"], str) and body["detail"]
    assert 400 <= cls.status < 600


def test_detail_and_data() -> None:
    body = errors.InvalidAPIParameters("'lang' is missing.", data={"key": "lang"}).to_problem()
    assert body["detail"] == "'lang' is missing."
    assert body["title"] == errors.InvalidAPIParameters.title
    assert body["data"] == {"key": "lang"}
    assert "data" not in errors.InvalidAPIParameters().to_problem()


def test_agent_details() -> None:
    body = errors.KernelCreationFailed(
        "no luck", agent_error_title="image missing", exception="ImageNotFound('x')"
    ).to_problem()
    assert body["agent-details"] == {
        "type": "https://api.backend.ai/probs/agent-failure",
        "title": "image missing",
        "exception": "ImageNotFound('x')",
    }
    timeout = errors.KernelExecutionFailed(agent_error_type="agent-timeout").to_problem()
    assert timeout["agent-details"]["type"].endswith("/agent-timeout")
    assert "exception" not in timeout["agent-details"]


def test_headers() -> None:
    assert errors.RateLimitExceeded(limit=3, window=900).headers() == {
        "X-RateLimit-Limit": "3", "X-RateLimit-Remaining": "0", "X-RateLimit-Window": "900",
    }
    assert errors.MethodNotAllowed(allowed=["PUT", "GET"]).headers() == {"Allow": "GET, PUT"}
    assert errors.MethodNotAllowed().headers() == {}
    assert errors.AuthFailed().headers() == {}
