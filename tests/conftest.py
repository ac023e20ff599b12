import os

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="module")
def single_thread():
    """One intra-op thread for a test module (`pytestmark = pytest.mark.usefixtures("single_thread")`): tiny
    matmuls are slower with intra-op threads on a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_llama():
    from reasonlens.models.tiny import tiny_llama

    return tiny_llama()


@pytest.fixture(scope="session")
def smollm2():
    from reasonlens.models import load

    return load("smollm2-135m")
