"""The differential package's fixtures: its Dask cluster closes with the package."""

from __future__ import annotations

import sys

import pytest


@pytest.fixture(scope="package", autouse=True)
def _dask_cluster_closed_after_the_package():
    """The Dask configurations' one-worker cluster (on_dask.py) starts at the first Dask
    run; it is closed when this package's tests are done, so its threads do not run
    under the rest of the suite (whose memory tests trace every thread)."""
    yield
    on_dask = sys.modules.get(f"{__package__}.on_dask")
    if on_dask is not None:
        on_dask.close()
