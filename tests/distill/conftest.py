import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The toy models here are tiny: a second intra-op thread only adds contention on a shared 2-core box."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
