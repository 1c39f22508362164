import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread():
    # The test machine is shared: several OpenMP threads on 2 busy cores are far slower than one.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True, scope="session")
def dcn_kernel_built():
    # The C++ DCN kernel builds on its first use (about 10 s on a fresh machine): here, once,
    # rather than inside whichever test, or CLI subprocess, happens to run a DCN first.
    from models import dcn_native
    dcn_native.available()
