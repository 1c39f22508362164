import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread():
    # The test machine is shared: several OpenMP threads on 2 busy cores are far slower than one.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
