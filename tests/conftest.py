import os

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def tiny_llama():
    from reasonlens.models.tiny import tiny_llama

    return tiny_llama()


@pytest.fixture(scope="session")
def smollm2():
    from reasonlens.models import load

    return load("smollm2-135m")
