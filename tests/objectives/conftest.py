import pytest
import torch

from .synth import normalized_fbank, synth_clips


@pytest.fixture(scope="module")
def fbank_batch() -> torch.Tensor:
    return normalized_fbank(synth_clips(10, 1.0, seed=0))  # (10, 98, 128)
