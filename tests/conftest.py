"""Shared fixtures: the shared data directory (skipped with a reason when absent), a clean
method registry."""

from __future__ import annotations

import pytest
import torch

from poseshape.core.paths import shared_data_status


@pytest.fixture(scope="session")
def shared_data():
    """Path to ``../shared/data`` (or ``$POSESHAPE_DATA``).

    Skips the requesting test, with the reason, only when the directory is absent; when it
    is present the test runs (a missing file inside it is then a failure, not a skip).
    """
    root, reason = shared_data_status()
    if reason is not None:
        pytest.skip(reason)
    return root


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    torch.set_num_threads(2)
    yield


@pytest.fixture
def clean_registry():
    """Methods registered inside the test are unregistered afterwards."""
    from poseshape.engine import registry

    before = dict(registry._REGISTRY)
    yield
    registry._REGISTRY.clear()
    registry._REGISTRY.update(before)


@pytest.fixture
def one_thread(_seed_and_threads):
    """Run the test on one thread: refinement tests, whose many small kernels two OpenMP threads
    on the shared 2-core machine mostly spend waiting on each other (measured on the car test
    at load ~6 without OMP_WAIT_POLICY=PASSIVE: 46 s with 2 threads, 15 s with 1)."""
    torch.set_num_threads(1)
    yield
