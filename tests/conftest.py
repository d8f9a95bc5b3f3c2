"""Settings shared by every Crucible test suite."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# Example databases and deadlines make property tests flaky on a loaded CI machine;
# the number of examples stays small so the suites stay fast.
settings.register_profile(
    "crucible",
    max_examples=int(os.environ.get("CRUCIBLE_HYPOTHESIS_EXAMPLES", "60")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.load_profile("crucible")
