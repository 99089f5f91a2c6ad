import pytest
import torch

from .synth import normalized_fbank, synth_clips


@pytest.fixture(autouse=True)
def one_thread():
    """These models are tiny: one intra-op thread is as fast and does not oversubscribe shared CPUs."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.fixture(scope="module")
def fbank_batch() -> torch.Tensor:
    return normalized_fbank(synth_clips(10, 1.0, seed=0))  # (10, 98, 128)
