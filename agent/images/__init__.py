"""Kernel images: recipes as data, the builder, and the CLI.

Images (for the default suite, bookworm; docs/languages.md has the full table):

=================================== ====================================== =========
image                               aliases (``crucible.aliases``, some)    about
=================================== ====================================== =========
``crucible/base:bookworm``          (none: not a kernel image)             113 MB
``crucible/base:bullseye``          (base of python2, julia, python-dl)    106 MB
``crucible/kernel-python:3.11``     python, python:3, python3              496 MB
``crucible/kernel-python-ml:3.11``  python-tensorflow, python-pytorch      3.2 GB
``crucible/kernel-python-dl:3.9``   python-caffe, python-mxnet             881 MB
``crucible/kernel-python2:2.7``     python2                                183 MB
``crucible/kernel-c:12``            c, gcc                                 297 MB
``crucible/kernel-cpp:12``          cpp, c++, g++                          353 MB
``crucible/kernel-java:17``         java, openjdk                          406 MB
``crucible/kernel-nodejs:18``       nodejs, node, javascript               206 MB
``crucible/kernel-lua:5.4``         lua                                    114 MB
``crucible/kernel-php:8.2``         php                                    179 MB
``crucible/kernel-r:4.2``           r, R                                   234 MB
``crucible/kernel-octave:7``        octave, matlab                         698 MB
``crucible/kernel-haskell:9.0``     haskell, ghc                           1.1 GB
``crucible/kernel-julia:1.5``       julia                                  452 MB
=================================== ====================================== =========

Kernel images are named ``crucible/kernel-<lang>:<tool chain version>``; the version comes
from `suites.SUITE_VERSIONS` and is checked against the built image. Every kernel image
runs as ``work`` (uid/gid 1000) in ``/home/work`` with the spec 9 environment
(`crucible.kernels.contract`), has no ``CMD`` (the agent starts the bind-mounted
runner), and carries the spec 9 labels: ``ai.backend.maxcores``, ``ai.backend.maxmem``,
``ai.backend.timeout`` (seconds per execution: 30 for the light languages, up to 120 for
python-ml; an agent may enforce less), ``ai.backend.mode=query``,
``ai.backend.features=batch query uid-match user-input``, ``ai.backend.version=1``; plus
``crucible.lang``, ``crucible.aliases``, ``crucible.image-kind`` (``base``/``kernel``),
``crucible.recipe-hash`` and ``crucible.base-hash``.

What each language's image holds is defined once, with its runner recipe, in
`crucible.agent.runner.languages`. A language may name its Debian suite (Python 2, Julia
and Caffe/MXNet need bullseye): the builder then builds that suite's base too. Building
(``crucible images build python c cpp`` or ``... all``) skips any image whose
``crucible.recipe-hash`` label matches its recipe. The base image is a debootstrap rootfs;
its .deb files are cached in ``<state_dir>/images/debootstrap-cache`` and the packed rootfs
in ``<state_dir>/images/base-<suite>-<hash>.tar``, so a removed base image is re-imported
in seconds.

Modules: `suites` and `recipes` are pure (no Docker, no I/O); `commands` runs the
``docker`` CLI and debootstrap through ``trio.run_process``; `inventory` reads the local
images; `base_image` and `builder` build; `cli` adds ``crucible images build|list``. The
``lang`` → image resolution is `crucible.kernels.catalog` (the manager resolves too).
"""
