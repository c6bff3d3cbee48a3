"""Engine tests use one intra-op thread: tiny tensors gain nothing from more, and the cores are shared."""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
