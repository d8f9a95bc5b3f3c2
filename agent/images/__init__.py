"""Kernel images: recipes as data, the builder, the `lang` catalog, and the CLI.

`crucible.agent.images.catalog` and `.recipes` are pure (no Docker); `.builder` drives the
``docker`` CLI and debootstrap; `.cli` adds ``crucible images build|list``.
"""
