"""Both label tokenizers implement one protocol and label through the one parity-tested nearest-code path."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from sonar_ray.models import tokenizer as tokenizer_lib
from sonar_ray.models.tokenizer import nearest_codes
from sonar_ray.objectives.codebook import assign
from sonar_ray.objectives.random_projection import RandomProjectionConfig, RandomProjectionTokenizer
from sonar_ray.train import artifacts

PACKAGE = Path(__file__).resolve().parents[2] / "sonar_ray"


@pytest.fixture(scope="module")
def tokenizers(fixtures_dir):
    return {"official": tokenizer_lib.load_checkpoint(fixtures_dir / "tokenizer_tiny.pt"),
            "random_projection": RandomProjectionTokenizer(RandomProjectionConfig(num_codes=1024, seed=0))}


@pytest.mark.parametrize("kind", ["official", "random_projection"])
def test_labels_are_the_nearest_code_of_the_quantizer_input_even_under_autocast(tokenizers, kind, fbank_batch):
    tok = tokenizers[kind]
    pad = torch.zeros(fbank_batch.shape[:2], dtype=torch.bool)
    pad[3, 60:] = True
    with torch.no_grad():
        z = tok.quantize_input(fbank_batch, pad)  # (B, P, d)
        labels = tok.labels(z)
        expected = nearest_codes(F.normalize(z, dim=-1), tok.codebook)[0]
        assert torch.equal(labels, expected) and torch.equal(tok.labels_from_fbank(fbank_batch, pad), expected)
        assert tok.num_codes == len(tok.codebook)
        # bf16 autocast (what the training loop runs under on GPUs) must not change which code is nearest
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert torch.equal(tok.labels(z), expected)
            assert torch.equal(assign(F.normalize(z, dim=-1).flatten(0, 1), tok.codebook)[0], expected.flatten())


@pytest.mark.parametrize("kind", ["official", "random_projection"])
def test_either_kind_saves_and_loads_through_one_call(tokenizers, kind, fbank_batch, tmp_path):
    tok = tokenizers[kind]
    tok.save(str(tmp_path / "tokenizer.pt"))
    back = artifacts.load_label_tokenizer(str(tmp_path / "tokenizer.pt"))
    assert type(back) is type(tok) and back.adaptable == (kind == "official")
    assert torch.equal(back.labels_from_fbank(fbank_batch), tok.labels_from_fbank(fbank_batch))


def test_no_code_tells_the_tokenizer_kinds_apart_by_type():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "isinstance" and "Tokenizer" in ast.unparse(node):
                offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert not offenders, offenders


@pytest.mark.parametrize("kind", ["official", "random_projection"])
def test_labels_from_fbank_are_computed_in_float32_under_bf16_autocast(tokenizers, kind, fbank_batch):
    """The training loop runs under bf16 autocast on GPUs; the tokenizer encoder must not (CPU emulation)."""
    tok = tokenizers[kind]
    pad = torch.zeros(fbank_batch.shape[:2], dtype=torch.bool)
    with torch.no_grad():
        expected = tok.labels_from_fbank(fbank_batch, pad)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            z = tok.quantize_input(fbank_batch, pad)
            labels = tok.labels_from_fbank(fbank_batch, pad)
    assert z.dtype == torch.float32
    assert torch.equal(labels, expected)
