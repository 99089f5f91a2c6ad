"""Kaldi fbank: parity with torchaudio's kaldi.fbank (stored in the fixtures) and behaviour beyond them."""

import importlib
import importlib.util
import math

import pytest
import torch

from sonar_ray.audio.fbank import WINDOW_TYPES, kaldi_fbank
from tolerances import FBANK_ABS, FBANK_REL

NAMES = ["batch", "single", "single_falsemask"]


@pytest.fixture(scope="module")
def data(fixtures_dir):
    inputs = torch.load(fixtures_dir / "inputs.pt", weights_only=True)
    expected = torch.load(fixtures_dir / "expected.pt", weights_only=True)
    return inputs, expected["fbank_raw"]


@pytest.mark.parametrize("name", NAMES)
def test_fbank_matches_torchaudio_reference(data, name):
    inputs, fbank_raw = data
    wave = inputs[name]["source"] * 2 ** 15
    got = kaldi_fbank(wave, num_mel_bins=128, sample_frequency=16000, frame_length=25, frame_shift=10)
    exp = fbank_raw[name]
    assert got.shape == exp.shape and got.dtype == torch.float32
    diff = (got - exp).abs()
    assert diff.max() <= FBANK_ABS
    assert (diff / exp.abs().clamp_min(1.0)).max() <= FBANK_REL
    # Unbatched input gives the same rows, bit for bit.
    assert torch.equal(kaldi_fbank(wave[0]), got[0])


def test_fbank_tolerance_catches_a_wrong_option(data):
    """The negative control: the stored-fixture tolerance is far below what a real mistake moves."""
    inputs, fbank_raw = data
    wave = inputs["batch"]["source"] * 2 ** 15
    wrong = kaldi_fbank(wave, num_mel_bins=128, preemphasis_coefficient=0.96)
    assert (wrong - fbank_raw["batch"]).abs().max() > 20 * FBANK_ABS


def test_padded_silence_hits_the_log_floor(data):
    inputs, fbank_raw = data
    fb = kaldi_fbank(inputs["batch"]["source"] * 2 ** 15)
    floor = math.log(torch.finfo(torch.float32).eps)
    assert torch.allclose(fb[1, -10:], torch.full_like(fb[1, -10:], floor))


@pytest.mark.parametrize("window_type", WINDOW_TYPES)
def test_options_shapes_and_finiteness(window_type):
    wave = torch.randn(3, 8000) * 1000
    fb = kaldi_fbank(wave, window_type=window_type, num_mel_bins=40, dither=1.0, use_power=False)
    assert fb.shape == (3, 1 + (8000 - 400) // 160, 40) and torch.isfinite(fb).all()
    centred = kaldi_fbank(wave, snip_edges=False, window_type=window_type)
    assert centred.shape == (3, (8000 + 80) // 160, 128) and torch.isfinite(centred).all()


def test_energy_column_and_linear_output():
    wave = torch.randn(2, 4000) * 1000
    fb = kaldi_fbank(wave, use_energy=True, remove_dc_offset=False)
    frames = wave.unfold(-1, 400, 160)  # (B, T, 400): raw energy is taken before pre-emphasis and window
    assert torch.allclose(fb[..., 0], frames.pow(2).sum(-1).log(), rtol=1e-5)
    assert torch.allclose(fb[..., 1:], kaldi_fbank(wave, remove_dc_offset=False))
    linear = kaldi_fbank(wave, use_log_fbank=False)
    assert torch.allclose(linear.clamp_min(torch.finfo(torch.float32).eps).log(), kaldi_fbank(wave), atol=1e-5)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="framing"):
        kaldi_fbank(torch.zeros(1, 100))  # shorter than one window
    with pytest.raises(ValueError, match="shape"):
        kaldi_fbank(torch.zeros(1, 2, 1000))
    with pytest.raises(ValueError, match="window_type"):
        kaldi_fbank(torch.zeros(1000), window_type="kaiser")
    with pytest.raises(ValueError, match="mel bank"):
        kaldi_fbank(torch.zeros(1000), low_freq=9000.0)
    with pytest.raises(ValueError, match="backend"):
        kaldi_fbank(torch.zeros(1000), backend="librosa")


def test_torchaudio_backend(data):
    inputs, fbank_raw = data
    wave = inputs["batch"]["source"] * 2 ** 15
    try:
        importable = importlib.util.find_spec("torchaudio") is not None
        importable = importable and bool(importlib.import_module("torchaudio.compliance.kaldi"))
    except Exception:  # installed but broken (e.g. built for another torch)
        importable = False
    if importable:
        assert torch.allclose(kaldi_fbank(wave, backend="torchaudio"), fbank_raw["batch"], atol=FBANK_ABS)
    else:
        with pytest.raises(RuntimeError, match="torchaudio"):
            kaldi_fbank(wave, backend="torchaudio")

