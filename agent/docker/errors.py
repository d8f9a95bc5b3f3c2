"""What can go wrong with the Docker engine, as the agent's own exception classes.

The driver (`crucible.agent.docker.driver`) raises these ``from`` the SDK's exceptions,
so no caller ever handles a ``docker`` or ``requests`` type (and none imports them).
"""

from __future__ import annotations

from typing import Any

from crucible import errors


class DockerError(Exception):
    """The Docker engine refused or failed an operation."""


class DockerUnavailable(DockerError):
    """The engine cannot be reached (daemon down, socket missing, connection reset)."""


class DockerTimeout(DockerError):
    """The engine did not answer within ``agent.docker_timeout``."""


class ContainerNotFound(DockerError):
    """No container with that id or name."""


class ImageNotFound(DockerError, errors.ImageNotFound):
    """No image with that reference in the local engine (nothing is ever pulled).

    The engine's side of the one "no such image" of `crucible.errors`: a `DockerError`
    for the agent's error handling, and the same problem wherever it is rendered.
    """


class ContainerConflict(DockerError):
    """The engine reports a conflict, e.g. the container name is already in use."""


def from_api_error(what: str, subject: str, exc: Any, *, image_missing: bool) -> DockerError:
    """The agent's error for the SDK's API error `exc` of operation `what` on a `subject`
    (``image`` or a container): by the engine's HTTP status; `image_missing` when the SDK
    itself said no such image."""
    status = getattr(getattr(exc, "response", None), "status_code", None)
    message = f"{what}: {getattr(exc, 'explanation', None) or exc}"
    if image_missing or (status == 404 and subject == "image"):
        return ImageNotFound(message)
    if status == 404:
        return ContainerNotFound(message)
    if status == 409:
        return ContainerConflict(message)
    return DockerError(message)
