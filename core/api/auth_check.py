"""``/auth`` and ``/auth/test``: check that a keypair signs correctly (spec 10.3)."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, redirect
from werkzeug.wrappers import Response as WerkzeugResponse

from crucible import errors
from crucible.api.body import parsed_body
from crucible.api.guard import authenticated

blueprint = Blueprint("auth", __name__)


@blueprint.route("/auth", methods=["GET", "POST"])
@blueprint.route("/auth/test", methods=["GET", "POST"])
@authenticated
async def auth_check() -> dict[str, Any]:
    # A body that is not JSON is an authentication-parameter error here (spec 10.3).
    body = await parsed_body(errors.InvalidAuthParameters)
    echo = body.get("echo") if isinstance(body, dict) else None
    return {"authorized": "yes", "echo": echo}


@blueprint.route("/authorize", methods=["GET"])
async def legacy_authorize() -> WerkzeugResponse:
    return redirect("/v3/auth/test", 302)
