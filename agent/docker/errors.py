"""What can go wrong with the Docker engine, as the agent's own exception classes.

The driver (`crucible.agent.docker.driver`) raises these ``from`` the SDK's exceptions,
so no caller ever handles a ``docker`` or ``requests`` type (and none imports them).
"""

from __future__ import annotations

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
