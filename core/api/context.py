"""How a request handler reaches the manager's components (`open_manager` built them)."""

from __future__ import annotations

from quart import current_app

from crucible.manager.components import ManagerComponents

EXTENSION_KEY = "crucible"


def manager_context() -> ManagerComponents:
    ctx: ManagerComponents = current_app.extensions[EXTENSION_KEY]
    return ctx
