"""Kernel images: recipes as data, the builder, the ``lang`` catalog, and the CLI.

Images (for the default suite, bookworm):

=============================== ========================================== =========
image                           aliases (``crucible.aliases``)             about
=============================== ========================================== =========
``crucible/base:bookworm``      (none: not a kernel image)                 113 MB
``crucible/kernel-python:3.11`` python, python:latest, python:3,           496 MB
                                python:3.11, python3
``crucible/kernel-c:12``        c, c:latest, c:12, gcc                     297 MB
``crucible/kernel-cpp:12``      cpp, cpp:latest, cpp:12, c++, g++          353 MB
=============================== ========================================== =========

Kernel images are named ``crucible/kernel-<lang>:<tool chain version>``; the version comes
from `recipes.SUITE_VERSIONS` and is checked against the built image. Every kernel image
runs as ``work`` (uid/gid 1000) in ``/home/work`` with the spec 9 environment, has no
``CMD`` (the agent starts the bind-mounted runner), and carries the spec 9 labels:
``ai.backend.maxcores=4``, ``ai.backend.maxmem`` (``2g`` python, ``1g`` c/cpp),
``ai.backend.timeout=30`` (seconds per execution: an interactive sandbox; an agent may
enforce less), ``ai.backend.mode=query``, ``ai.backend.features=batch query uid-match
user-input``, ``ai.backend.version=1``; plus ``crucible.lang``, ``crucible.aliases``,
``crucible.image-kind`` (``base``/``kernel``), ``crucible.recipe-hash`` and
``crucible.base-hash``.

Building (``crucible images build python c cpp`` or ``... all``) skips any image whose
``crucible.recipe-hash`` label matches its recipe. The base image is a debootstrap rootfs;
its .deb files are cached in ``<state_dir>/images/debootstrap-cache`` and the packed rootfs
in ``<state_dir>/images/base-<suite>-<hash>.tar``, so a removed base image is re-imported
in seconds.

Modules: `recipes` and `catalog` are pure (no Docker, no I/O); `builder` drives the
``docker`` CLI and debootstrap through ``trio.run_process``; `cli` adds
``crucible images build|list``.
"""
