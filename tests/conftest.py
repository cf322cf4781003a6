"""Shared fixtures: the shared data directory (skipped with a reason when absent)."""

from __future__ import annotations

import pytest
import torch

from poseshape.paths import shared_data_dir


@pytest.fixture(scope="session")
def shared_data():
    """Path to ``../shared/data`` (or ``$POSESHAPE_DATA``); skips the test when absent."""
    root = shared_data_dir()
    if not root.is_dir():
        pytest.skip(f"shared data not found at {root} (set POSESHAPE_DATA to its location)")
    return root


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    torch.set_num_threads(2)
    yield
