"""Bit-exact parity with the official code run on the same machine (the stored fixtures allow a cross-CPU
tolerance, tests/models/tolerances.py; on one machine the explicit attention path and our fbank must agree
with the reference to the last bit)."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sonar_ray.audio.fbank import kaldi_fbank
from sonar_ray.models import beats, tokenizer


@pytest.fixture(scope="module")
def reference(reference_dir, fixtures_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("reference") / "outputs.pt"
    script = Path(__file__).with_name("reference_outputs.py")
    proc = subprocess.run([sys.executable, str(script), str(reference_dir), str(fixtures_dir), str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return torch.load(out, weights_only=True)


@pytest.fixture(scope="module")
def ours(fixtures_dir):
    inputs = torch.load(fixtures_dir / "inputs.pt", weights_only=True)
    model = beats.load_checkpoint(fixtures_dir / "beats_tiny.pt")
    finetuned = beats.load_checkpoint(fixtures_dir / "beats_tiny_finetuned.pt")
    tok = tokenizer.load_checkpoint(fixtures_dir / "tokenizer_tiny.pt")
    for m in (model, finetuned, tok):
        m.use_sdpa = False  # the explicit path keeps the official operation order
    torch.set_num_threads(2)
    res = {}
    with torch.no_grad():
        for name, item in inputs.items():
            src, pm = item["source"], item["padding_mask"]
            res[name] = {
                "fbank_raw": kaldi_fbank(src * 2 ** 15, num_mel_bins=128, sample_frequency=16000,
                                         frame_length=25, frame_shift=10),
                "preprocess": model.preprocess(src),
                "features": model.extract_features(src, padding_mask=pm)[0],
                "lprobs": finetuned.extract_features(src, padding_mask=pm)[0],
                "labels": tok.extract_labels(src, padding_mask=pm),
            }
    return res


@pytest.mark.parametrize("output", ["fbank_raw", "preprocess", "features", "lprobs", "labels"])
@pytest.mark.parametrize("name", ["batch", "single", "single_falsemask"])
def test_bit_identical_to_reference_on_this_machine(reference, ours, name, output):
    got, exp = ours[name][output], reference[name][output]
    assert got.dtype == exp.dtype and got.shape == exp.shape
    assert torch.equal(got, exp), f"max abs diff {(got.double() - exp.double()).abs().max().item():.3g}"
