"""``/auth`` and ``/auth/test``: check that a keypair signs correctly (spec 10.3)."""

from __future__ import annotations

import json
from typing import Any

from crucible import errors
from crucible.api.guard import authenticated
from quart import Blueprint, redirect, request
from werkzeug.wrappers import Response as WerkzeugResponse

blueprint = Blueprint("auth", __name__)


@blueprint.route("/auth", methods=["GET", "POST"])
@blueprint.route("/auth/test", methods=["GET", "POST"])
@authenticated
async def auth_test() -> dict[str, Any]:
    raw = await request.get_data(cache=True, as_text=False)
    echo = None
    if raw.strip():
        try:
            body = json.loads(raw)
        # Deep nesting exhausts the parser's stack (RecursionError): bad input too.
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            raise errors.InvalidAuthParameters("The body is not valid JSON.") from None
        echo = body.get("echo") if isinstance(body, dict) else None
    return {"authorized": "yes", "echo": echo}


@blueprint.route("/authorize", methods=["GET"])
async def legacy_authorize() -> WerkzeugResponse:
    return redirect("/v3/auth/test", 302)
