"""What the tests expect of every kernel image's labels (spec 9), built or only planned."""

from __future__ import annotations

#: Labels spec 9 requires, each with a value.
SPEC9_REQUIRED = (
    "ai.backend.maxcores",
    "ai.backend.maxmem",
    "ai.backend.timeout",
    "ai.backend.mode",
)
#: `ai.backend.features` of every Crucible kernel: what its runner does for each language.
KERNEL_FEATURES = {"batch", "query", "uid-match", "user-input"}
