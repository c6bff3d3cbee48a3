"""An autouse fixture for test folders whose conftest imports it: torch runs single-threaded there."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """Run model tests single-threaded: on a shared 2-core machine, intra-op threads waiting on each
    other made small-input passes 20-40x slower than one thread (measured on densenet169)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
