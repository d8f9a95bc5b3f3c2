"""Version probes: ``GET /`` and ``GET /vN`` (spec 1.2)."""

from __future__ import annotations

from quart import Blueprint

from crucible import API_VERSION, errors
from crucible.api.guard import public

#: The latest minor of each major version.
KNOWN_VERSIONS = {1: "v1.20160915", 2: "v2.20170315", 3: "v3.20170615", 4: API_VERSION}

blueprint = Blueprint("version", __name__)


@blueprint.route("/", methods=["GET"])
@public
async def hello() -> dict[str, str]:
    return {"version": API_VERSION}


@blueprint.route("/v<int:major>", methods=["GET"])
@blueprint.route("/v<int:major>/", methods=["GET"])
@public
async def version_of(major: int) -> dict[str, str]:
    if major not in KNOWN_VERSIONS:
        raise errors.GenericNotFound(f"API version v{major} is not supported.")
    return {"version": KNOWN_VERSIONS[major]}
