"""Plugin hook specifications: one module per plugin kind.

Hooks are synchronous registration calls (pluggy does not await): each returns an
object implementing the kind's `typing.Protocol`, and the core drives that object.

A plugin package names its module under the kind's entry-point group (``crucible.storage``,
``crucible.accelerators``, ``crucible.schedulers``...) in its pyproject.toml, e.g.::

    [project.entry-points."crucible.storage"]
    memory = "my_package.memory_storage"

The module's `hookimpl` functions (`crucible.hookspecs.markers`) are then found by name.
"""
