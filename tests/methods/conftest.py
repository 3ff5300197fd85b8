from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """Run these tests on one intra-op thread, restored afterwards.

    The test machine's cores are shared with other jobs; with every core oversubscribed, torch's
    OpenMP workers spin on barriers and small convolutions run 10 to 60 times slower than on one
    thread.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
