"""The kernel container contract: who a kernel runs as, where things are, what is labelled.

The agent builds containers to it, the image builder bakes it into images, the runner
(which cannot import this module: it is bind-mounted alone into the container) relies on
it, and the manager reads the labels. Change a value here and every image must be
rebuilt (`crucible.lang` & co. are in every image's labels, the user in its layers) and
every running kernel recreated: these are not settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

# -- the kernel user ------------------------------------------------------------------------

#: spec 9: kernels run as the unprivileged user ``work``, uid and gid 1000, whose home is
#: the session's working directory.
WORK_USER: Final = "work"
WORK_UID: Final = 1000
WORK_GID: Final = 1000
#: ``uid:gid`` as Docker's ``User`` takes it.
CONTAINER_USER: Final = f"{WORK_UID}:{WORK_GID}"

# -- paths inside a kernel container --------------------------------------------------------

#: The session's working directory (spec 4.9-4.11 paths are relative to it); vfolders are
#: mounted one level below it.
WORK_DIR: Final = "/home/work"
#: The kernel runner's code, bind-mounted read-only (the runner's ``main.py`` is in it).
RUNNER_DIR: Final = "/opt/crucible/runner"
#: The agent's socket directory for the runner, bind-mounted read-only.
IPC_DIR: Final = "/opt/crucible/ipc"

#: The spec 9 base environment of every kernel (baked into images, set on containers).
BASE_ENVIRONMENT: Final[Mapping[str, str]] = {
    "TERM": "xterm",
    "LANG": "C.UTF-8",
    "SHELL": "/bin/bash",
    "USER": WORK_USER,
    "HOME": WORK_DIR,
}

# -- container labels (written by the agent, read back after its restart) ------------------

LABEL_OWNER: Final = "crucible.owner"
#: The value of `LABEL_OWNER` on every kernel container.
OWNER: Final = "crucible"
LABEL_KERNEL_ID: Final = "crucible.kernel-id"
LABEL_AGENT_ID: Final = "crucible.agent-id"
#: JSON: what the agent needs to supervise the kernel again (image, lang, limits...).
LABEL_KERNEL_INFO: Final = "crucible.kernel-info"
#: On a warm pool's kernels (the image they were started for): the kernel id label of
#: such a container is its pool slot's; the session it serves is in the agent's claim
#: record (`crucible.agent.pool.claims`).
LABEL_POOL: Final = "crucible.pool"
#: Kernel containers are named ``crucible-kernel-<kernel id>``.
CONTAINER_NAME_PREFIX: Final = "crucible-kernel-"

# -- image labels (written by the image builder) --------------------------------------------

#: The language: the runner recipe's name (``--lang``), and the image repository suffix.
LABEL_LANG: Final = "crucible.lang"
#: The API ``lang`` names that resolve to the image, separated by commas.
LABEL_ALIASES: Final = "crucible.aliases"
LABEL_RECIPE_HASH: Final = "crucible.recipe-hash"
LABEL_BASE_HASH: Final = "crucible.base-hash"
#: `KIND_BASE` or `KIND_KERNEL`: lets ``crucible images list --all`` show the base too.
LABEL_KIND: Final = "crucible.image-kind"
KIND_BASE: Final = "base"
KIND_KERNEL: Final = "kernel"
LABEL_SUITE: Final = "crucible.debian-suite"

#: spec 9 image labels: resource maximums, the per-execution time limit (seconds), and
#: the environment variables that get the session's core count.
LABEL_MAX_CORES: Final = "ai.backend.maxcores"
LABEL_MAX_MEM: Final = "ai.backend.maxmem"
LABEL_TIMEOUT: Final = "ai.backend.timeout"
LABEL_MODE: Final = "ai.backend.mode"
LABEL_FEATURES: Final = "ai.backend.features"
LABEL_VERSION: Final = "ai.backend.version"
LABEL_CORECOUNT_ENVS: Final = "ai.backend.envs.corecount"
