"""The SONAR loss step in one process: distillation terms vanish when student == teacher, and
gradients reach only the student; distillation scopes; the codebook survey (prior usage, growth),
usage written back into the tokenizer; the teacher after a restart; the run config's own checks."""

from __future__ import annotations

import pytest
import torch

from sonar_ray.models import beats, tokenizer as tokenizer_lib
from sonar_ray.objectives.tokenizer_training import kmeans_init
from sonar_ray.train import artifacts
from sonar_ray.train.config import TrainConfig
from sonar_ray.audio.features import normalize_fbank
from sonar_ray.train.assemble import Models, build_models, write_checkpoint
from sonar_ray.train.growth import survey_codebook
from sonar_ray.train.loop import compute_losses, finite_update
from sonar_ray.objectives.codebook import OnlineCodebook, assign, recorded_usage
from sonar_ray.objectives.masked_prediction import MaskedTokenModel


def _starting_files(tmp_path) -> dict:
    """A tiny starting model as a run finds it: model.pt, tokenizer.pt (k-means codebook), predictor.pt."""
    torch.manual_seed(0)
    encoder = beats.BEATs(beats.BEATsConfig.preset("tiny"))
    tok = tokenizer_lib.Tokenizer(tokenizer_lib.TokenizerConfig.preset("tiny"))
    fbank = normalize_fbank(torch.randn(8, 100, 128) * 6 + 15)  # like _batch's clips
    with torch.no_grad():
        kmeans_init(tok.quantize.embedding, torch.nn.functional.normalize(tok.quantize_input(fbank).flatten(0, 1), dim=-1))
        tok.quantize.embedding.cluster_size.fill_(1.0)  # a stale statistic: every code looks used
    paths = {"base": str(tmp_path / "model.pt"), "tokenizer": str(tmp_path / "tokenizer.pt"),
             "predictor": str(tmp_path / "predictor.pt")}
    beats.save_checkpoint(encoder, paths["base"])
    tokenizer_lib.save_checkpoint(tok, paths["tokenizer"])
    artifacts.save_predictor(artifacts.new_predictor(64, tok.cfg.quant_n), paths["predictor"])
    return paths


def _models(tmp_path, **kw) -> tuple[TrainConfig, Models]:
    cfg = TrainConfig(method="sonar", mask_ratio=0.75, **kw)
    return cfg, build_models(cfg, _starting_files(tmp_path), torch.device("cpu"))


def _batch(is_prior=(True, True, False, False)):
    g = torch.Generator().manual_seed(1)
    return {"fbank": torch.randn(4, 100, 128, generator=g) * 6 + 15, "padding_mask": torch.zeros(4, 100, dtype=torch.bool),
            "is_prior": torch.tensor(is_prior)}


def test_distillation_is_zero_when_student_equals_teacher(tmp_path):
    cfg, models = _models(tmp_path)
    models.student.eval()  # no dropout: the student computes exactly what the teacher computes
    _, logs, _ = compute_losses(cfg, models, models.student, _batch(), torch.Generator().manual_seed(0), "cpu")
    assert logs["loss_model"].item() < 1e-10  # zero up to float32 rounding
    # Tokenizer-level: KL to the teacher predictor's code distribution, not a second copy of the
    # masked-prediction loss (cross-entropy to the same labels equalled loss_mlm here).
    assert logs["loss_mlm"].item() > 1.0 and abs(logs["loss_tok"].item()) < 1e-6
    assert logs["codes_shared"].item() == models.tokenizer.cfg.quant_n


def test_distillation_scope_picks_the_clips_each_term_applies_to(tmp_path):
    cfg, models = _models(tmp_path)
    with torch.no_grad():  # move the student away so both terms are positive on every clip
        for p in models.student.parameters():
            p.add_(0.05 * torch.randn_like(p))
    models.student.eval()

    def terms(batch, **scopes):
        c = TrainConfig(method="sonar", mask_ratio=0.75, **scopes)
        _, logs, _ = compute_losses(c, models, models.student, batch, torch.Generator().manual_seed(0), "cpu")
        return logs["loss_tok"].item(), logs["loss_model"].item()

    new_only, prior_only = _batch((False,) * 4), _batch((True,) * 4)
    assert terms(new_only) == (0.0, 0.0)  # the default: replayed clips only
    everywhere = {"distill_scope_tok": "all", "distill_scope_model": "all"}
    assert min(terms(new_only, **everywhere)) > 0 and min(terms(prior_only, **everywhere)) > 0
    assert terms(new_only, distill_scope_tok="replay", distill_scope_model="replay") == (0.0, 0.0)
    assert terms(prior_only, distill_scope_tok="new", distill_scope_model="new") == (0.0, 0.0)
    assert terms(prior_only) == pytest.approx(terms(prior_only, **everywhere))
    with pytest.raises(ValueError, match="distill-scope-tok must be one of all, replay, new"):
        TrainConfig(distill_scope_tok="prior")


def test_the_teacher_runs_only_on_the_clips_a_distillation_term_reads(tmp_path):
    cfg, models = _models(tmp_path)  # default scopes: replayed clips only
    seen = []
    encode = models.teacher.encode
    models.teacher.encode = lambda x, **kw: seen.append(len(x)) or encode(x, **kw)
    batch = _batch((True, False, True, False))
    _, logs, _ = compute_losses(cfg, models, models.student, batch, torch.Generator().manual_seed(0), "cpu")
    assert seen == [2]  # the two replayed clips
    _, logs, _ = compute_losses(cfg, models, models.student, _batch((False,) * 4), torch.Generator().manual_seed(0), "cpu")
    assert seen == [2] and logs["loss_tok"].item() == logs["loss_model"].item() == 0.0  # no replayed clip: no teacher pass


def test_model_distillation_averages_exactly_the_chosen_layers(tmp_path):
    cfg, models = _models(tmp_path)
    with torch.no_grad():  # move the student so every layer's distance is positive and differs
        for p in models.student.parameters():
            p.add_(0.05 * torch.randn_like(p))
    models.student.eval()

    def loss_model(layers):
        c = TrainConfig(method="sonar", mask_ratio=0.75, distill_layers=layers)
        _, logs, _ = compute_losses(c, models, models.student, _batch(), torch.Generator().manual_seed(0), "cpu")
        return logs["loss_model"].item()

    first, last = loss_model([0]), loss_model([-1])
    assert first > 0 and last > 0 and first != pytest.approx(last)
    assert loss_model([0, -1]) == pytest.approx((first + last) / 2)
    assert loss_model([-1]) == loss_model([len(models.student.encoder.encoder.layers) - 1])


def _labels(models, batch):
    z = models.tokenizer.quantize_input(normalize_fbank(batch["fbank"]), batch["padding_mask"])  # (B, P, d)
    return assign(torch.nn.functional.normalize(z, dim=-1).flatten(0, 1), models.tokenizer.quantize.embedding.weight)[0].view(z.shape[:2])


@torch.no_grad()
def test_prior_usage_is_measured_by_labelling_the_prior_clips(tmp_path):
    cfg, models = _models(tmp_path)
    batches = [_batch(), _batch((False, True, True, False))]
    z = models.tokenizer.quantize_input(normalize_fbank(batches[0]["fbank"])).flatten(0, 1)
    away = torch.nn.functional.normalize(-z.mean(0) + 0.1 * torch.randn(8, z.shape[1]), dim=-1)
    models.tokenizer.quantize.embedding.weight[-8:] = away  # 8 codes no clip of these batches is near
    info = survey_codebook(cfg, models, batches, "cpu", measure_usage=True)
    prior_labels = torch.cat([_labels(models, b)[b["is_prior"]].flatten() for b in batches])
    K = models.tokenizer.cfg.quant_n
    expected = torch.bincount(prior_labels, minlength=K).float() / len(prior_labels)
    torch.testing.assert_close(models.codebook.usage, expected)
    assert info["prior_codes_used"] == int((expected > 0).sum()) < K  # not the stale cluster_size (all codes)


@torch.no_grad()
def test_growth_is_decided_from_all_survey_batches_and_bounded(tmp_path):
    def fitted(**kw):  # a codebook fitted on exactly the prior clips surveyed below
        cfg, models = _models(tmp_path, **kw)
        b = _batch()
        z = models.tokenizer.quantize_input(normalize_fbank(b["fbank"][b["is_prior"]])).flatten(0, 1)
        kmeans_init(models.tokenizer.quantize.embedding, torch.nn.functional.normalize(z, dim=-1))
        return cfg, models

    cfg, models = fitted(codebook_grow=3)
    far = _batch()
    tone = torch.linspace(-10, 40, 128).flip(0) * torch.cos(torch.arange(100) / 3.0)[:, None]  # (T, 128)
    far["fbank"][~far["is_prior"]] = tone + 15  # new clips unlike anything the codebook was fitted on
    K = models.tokenizer.cfg.quant_n
    info = survey_codebook(cfg, models, [far, _batch()], "cpu", measure_usage=False)
    assert info["codebook_err_new"] > 1.2 * info["codebook_err_prior"] and info["codebook_grown"] == 3
    assert models.tokenizer.cfg.quant_n == K + 3 == models.student.predictor.num_codes == models.codebook.usage.numel()
    cfg, models = fitted(codebook_grow=3, codebook_max_codes=K + 1)
    assert survey_codebook(cfg, models, [far], "cpu", measure_usage=False)["codebook_grown"] == 1


def test_adaptation_usage_counts_every_clip_and_is_written_into_the_saved_tokenizer(tmp_path):
    cfg, models = _models(tmp_path)
    batch = _batch()
    _, _, aux = compute_losses(cfg, models, models.student, batch, torch.Generator().manual_seed(0), "cpu")
    patches = models.student.encoder.patch_padding_mask(batch["padding_mask"], aux["features"].shape[0] // 4)
    assert aux["features"].shape[0] == (~patches).sum()  # prior clips' patches included
    models.codebook.usage.copy_(torch.linspace(0, 1, models.tokenizer.cfg.quant_n))
    usage = models.codebook.usage / models.codebook.usage.sum()
    models.codebook.usage.copy_(usage)
    opt = torch.optim.SGD(models.student.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    out = tmp_path / "ck"
    out.mkdir()
    write_checkpoint(out, models, opt, sched, 5, tmp_path / "none.jsonl")
    saved = tokenizer_lib.load_checkpoint(str(out / "tokenizer.pt"))  # still the official format
    torch.testing.assert_close(recorded_usage(saved.quantize), usage)
    # The next stage (or a restart) starts from that usage, not from zeros or the stale counts.
    paths = {**_starting_files(tmp_path / "next"), "tokenizer": str(out / "tokenizer.pt")}
    torch.testing.assert_close(build_models(cfg, paths, torch.device("cpu")).codebook.usage, usage)


def test_after_a_restart_the_teacher_tokenizer_is_the_starting_one(tmp_path):
    cfg, models = _models(tmp_path)
    start = tokenizer_lib.load_checkpoint(str(tmp_path / "tokenizer.pt")).quantize.embedding.weight.clone()
    with torch.no_grad():  # re-anchoring moved half the codes, then the checkpoint was written
        models.tokenizer.quantize.embedding.weight[::2] = torch.nn.functional.normalize(
            torch.randn_like(models.tokenizer.quantize.embedding.weight[::2]), dim=-1)
    tokenizer_lib.save_checkpoint(models.tokenizer, str(tmp_path / "resumed_tokenizer.pt"))
    paths = {**_starting_files(tmp_path), "student_tokenizer": str(tmp_path / "resumed_tokenizer.pt")}
    resumed = build_models(cfg, paths, torch.device("cpu"))
    assert torch.equal(resumed.teacher_tokenizer.quantize.embedding.weight, start)
    assert torch.equal(resumed.tokenizer.quantize.embedding.weight, models.tokenizer.quantize.embedding.weight)
    _, logs, _ = compute_losses(cfg, resumed, resumed.student, _batch(), torch.Generator().manual_seed(0), "cpu")
    assert logs["codes_shared"].item() == resumed.tokenizer.cfg.quant_n // 2


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
    assert all(p.grad is None for p in models.teacher_predictor.parameters())
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


def test_tokenizer_distillation_without_a_starting_predictor_fails_before_any_worker_starts(tmp_path):
    from sonar_ray.train.driver import check_inputs

    paths = _starting_files(tmp_path)
    del paths["predictor"]
    with pytest.raises(ValueError, match="predictor.pt"):
        check_inputs(TrainConfig(method="sonar"), paths)
    check_inputs(TrainConfig(method="sonar", lambda_tok=0.0), paths)


def test_training_inspection_and_evaluation_agree_on_the_real_patches_of_a_padded_batch(tmp_path):
    """One data contract: the stream's frame mask, the loss step's patches, inspection's and evaluation's
    pooling all count the patches a clip has on its own (the official mask groups patch indices instead)."""
    import numpy as np

    from sonar_ray.audio.features import clip_features
    from sonar_ray.data.decode import fit_length
    from sonar_ray.data.inspect import ClipInspector
    from sonar_ray.eval.embeddings import embed_waveforms, encode_frames

    cfg, models = _models(tmp_path)
    rng = np.random.default_rng(0)
    clips = [rng.uniform(-0.5, 0.5, n).astype(np.float32) for n in (32000, 19680, 32000, 25000)]  # 1.23 s, 1.56 s
    crops = [fit_length(c, 32000) for c in clips]  # what the stream does with a 2 s crop
    waves, lengths = np.stack([w for w, _ in crops]), np.array([n for _, n in crops])
    fbank, frame_pad = clip_features(waves, lengths)
    batch = {"fbank": fbank, "padding_mask": frame_pad, "is_prior": torch.tensor([True, True, False, False])}
    _, _, aux = compute_losses(cfg, models, models.student, batch, torch.Generator().manual_seed(0), "cpu")
    _, eval_padded = encode_frames(models.student.encoder, clips)
    assert aux["features"].shape[0] == (~eval_padded).sum() == 8 * (12 + 7 + 12 + 9)
    inspector = ClipInspector(2.0, 0.1, 60.0, embed=True, model_uri=str(tmp_path / "model.pt"))
    base = beats.load_checkpoint(str(tmp_path / "model.pt")).eval()
    np.testing.assert_allclose(inspector._embed(waves, lengths), embed_waveforms(base, clips), atol=1e-5)
