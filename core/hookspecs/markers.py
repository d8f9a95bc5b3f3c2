"""The pluggy markers shared by every plugin kind."""

import pluggy

PROJECT_NAME = "crucible"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
#: Decorate a plugin's hook implementations with this.
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)
