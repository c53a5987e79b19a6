"""Test-wide configuration: Hypothesis profiles.

Profiles (choose with ``HYPOTHESIS_PROFILE=name``; default ``quick``):

- ``quick``: what ``make test`` and CI run. 150 examples per property
  (the differential suite has three, so 450 workflows, each run ten times
  or more), no deadline, derandomised so every CI run tries the
  same examples, no example database (the differential corpus under
  ``tests/differential/corpus/`` is the project's memory of failures).
- ``thorough``: 2,000 random examples per property, with the database. For a
  time-boxed fuzzing session use ``make fuzz`` (``python -m
  tests.differential.long``) instead.
- ``dev``: 20 examples, for a fast edit-test loop.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_SLOW_IS_FINE = [
    HealthCheck.too_slow,
    HealthCheck.data_too_large,
    HealthCheck.filter_too_much,
    HealthCheck.large_base_example,
]

settings.register_profile(
    "quick",
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=_SLOW_IS_FINE,
    print_blob=True,
)
settings.register_profile(
    "thorough",
    max_examples=2000,
    deadline=None,
    suppress_health_check=_SLOW_IS_FINE,
    print_blob=True,
)
settings.register_profile(
    "dev",
    max_examples=20,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=_SLOW_IS_FINE,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "quick"))
