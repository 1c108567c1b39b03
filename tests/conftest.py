from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# "ci" is bounded so the whole suite stays well inside CI's budget; "dev" digs deeper.
settings.register_profile(
    "ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=300, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))
