"""Plugin hook specifications: one module per plugin kind.

Hooks are synchronous registration calls (pluggy does not await): each returns an
object implementing the kind's `typing.Protocol`, and the core drives that object.
"""
