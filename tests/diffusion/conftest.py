import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """Tensors here are tiny: with 2 intra-op threads on a busy 2-core box each op waits on the other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
