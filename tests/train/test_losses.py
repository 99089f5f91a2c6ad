"""The SONAR loss step in one process: distillation terms vanish when student == teacher, and
gradients reach only the student; the run config's own checks."""

from __future__ import annotations

import pytest
import torch

from sonar_ray.models import beats, tokenizer as tokenizer_lib
from sonar_ray.objectives.tokenizer_training import kmeans_init
from sonar_ray.train import artifacts
from sonar_ray.train.config import TrainConfig
from sonar_ray.train.loop import Models, compute_losses, finite_update, normalize_fbank
from sonar_ray.objectives.masked_prediction import MaskedTokenModel


def _models(tmp_path, lambda_tok=1.0, lambda_model=1.0) -> tuple[TrainConfig, Models]:
    torch.manual_seed(0)
    encoder = beats.BEATs(beats.BEATsConfig.preset("tiny"))
    beats.save_checkpoint(encoder, str(tmp_path / "model.pt"))
    tok = tokenizer_lib.Tokenizer(tokenizer_lib.TokenizerConfig.preset("tiny"))
    fbank = torch.randn(4, 100, 128)
    with torch.no_grad():
        kmeans_init(tok.quantize.embedding, torch.nn.functional.normalize(tok.quantize_input(fbank).flatten(0, 1), dim=-1))
    cfg = TrainConfig(method="sonar", lambda_tok=lambda_tok, lambda_model=lambda_model, mask_ratio=0.75)
    student = MaskedTokenModel(encoder, artifacts.new_predictor(64, tok.quantize.embedding.weight.shape[0]), 0.75)
    teacher = beats.load_checkpoint(str(tmp_path / "model.pt")).requires_grad_(False)
    return cfg, Models(student=student, tokenizer=tok.eval(), teacher=teacher, teacher_tokenizer=tok.eval())


def _batch():
    g = torch.Generator().manual_seed(1)
    return {"fbank": torch.randn(4, 100, 128, generator=g) * 6 + 15, "padding_mask": torch.zeros(4, 100, dtype=torch.bool),
            "is_prior": torch.tensor([True, True, False, False])}


def test_feature_distillation_is_zero_when_student_equals_teacher(tmp_path):
    cfg, models = _models(tmp_path)
    models.student.eval()  # no dropout: the student computes exactly what the teacher computes
    _, logs, _ = compute_losses(cfg, models, models.student, _batch(), torch.Generator().manual_seed(0), "cpu")
    assert logs["loss_model"].item() < 1e-10  # zero up to float32 rounding
    # With an unchanged codebook the teacher tokenizer's labels are the student's targets.
    assert torch.isclose(logs["loss_tok"], logs["loss_mlm"])


def test_gradients_reach_only_the_student(tmp_path):
    cfg, models = _models(tmp_path)
    with torch.no_grad():  # move the student away so every term has a gradient
        for p in models.student.encoder.parameters():
            p.add_(0.01 * torch.randn_like(p))
    loss, logs, _ = compute_losses(cfg, models, models.student, _batch(), torch.Generator().manual_seed(0), "cpu")
    assert logs["loss_model"].item() > 0
    loss.backward()
    assert all(p.grad is None for p in models.teacher.parameters())
    assert all(p.grad is None for p in models.tokenizer.parameters())
    grads = [p.grad for p in models.student.parameters() if p.requires_grad]
    assert sum(g is not None and g.abs().sum() > 0 for g in grads) > len(grads) // 2


def test_normalize_fbank_matches_beats_preprocess():
    wave = torch.randn(1, 16000) * 0.1
    model = beats.BEATs(beats.BEATsConfig.preset("tiny"))
    from sonar_ray.audio.fbank import kaldi_fbank

    raw = kaldi_fbank(wave * 2**15)
    assert torch.allclose(normalize_fbank(raw), model.preprocess(wave), atol=1e-5)


def test_stop_after_must_fall_inside_the_schedule():
    assert TrainConfig(max_steps=10).end_step == 10
    assert TrainConfig(max_steps=10, stop_after=4).end_step == 4
    for bad in (0, 11):
        with pytest.raises(ValueError, match="stop_after"):
            TrainConfig(max_steps=10, stop_after=bad)


def test_a_non_finite_loss_or_gradient_updates_nothing(tmp_path):
    from sonar_ray.train.schedule import build_optimizer

    cfg, models = _models(tmp_path)
    params = list(models.student.parameters())
    optimizer = build_optimizer(params, 1e-3, 0.01)
    before = [p.detach().clone() for p in params]
    poisoned = _batch()
    poisoned["fbank"][0] = float("inf")  # what one absurdly loud file did before inspection caught it
    loss, _, _ = compute_losses(cfg, models, models.student, poisoned, torch.Generator().manual_seed(0), torch.device("cpu"))
    assert not torch.isfinite(loss)
    assert finite_update(loss, params, optimizer, cfg.grad_clip, world=1) is None
    assert all(torch.equal(a, b) for a, b in zip(before, params))
    huge, _, _ = compute_losses(cfg, models, models.student, _batch(), torch.Generator().manual_seed(0), torch.device("cpu"))
    assert finite_update(huge * float("1e38") * 1e3, params, optimizer, cfg.grad_clip, world=1) is None  # inf grads
    assert all(torch.equal(a, b) for a, b in zip(before, params))

    loss, _, _ = compute_losses(cfg, models, models.student, _batch(), torch.Generator().manual_seed(0), torch.device("cpu"))
    assert torch.isfinite(finite_update(loss, params, optimizer, cfg.grad_clip, world=1))
    assert all(torch.isfinite(p).all() for p in params) and not all(torch.equal(a, b) for a, b in zip(before, params))
