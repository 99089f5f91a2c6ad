"""End to end on the tiny demo corpus with 2 CPU workers of a real local Ray: jobs/pretrain.py's
stages (the `tiny_base` fixture), then jobs/adapt.py (the library's `adapt(cfg)` behind the flags users
type) for each method, failures and resumption."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from fixtures_train import assert_readable_console, tiny_adapt_args
from jobs import adapt
from sonar_ray.models import beats, tokenizer as tokenizer_lib

pytestmark = pytest.mark.slow


def _teacher_distance(model_path: str, base_path: str, corpus: str) -> float:
    """Mean 1 - cos between a model's and the base model's features on a few real clips."""
    from sonar_ray.data import decode

    model, base = beats.load_checkpoint(model_path), beats.load_checkpoint(base_path)
    rows = [json.loads(l) for l in (Path(corpus) / "manifests" / "train.jsonl").read_text().splitlines()][:8]
    waves = [torch.from_numpy(decode((Path(corpus) / r["path"]).read_bytes(), seconds=1.0).wave) for r in rows]
    x = torch.stack([w[:16000] for w in waves if len(w) >= 16000])
    with torch.no_grad():
        a, _ = model.extract_features(x)
        b, _ = base.extract_features(x)
    return float((1 - torch.nn.functional.cosine_similarity(a, b, dim=-1)).mean())


def _assert_teacher_codebook_is_the_starting_one(out: Path, base: str, restarted_at: int) -> None:
    """Re-anchoring moved codes before the restart; afterwards the teacher must still hold the starting
    codebook, so the student shares fewer than all of its codes (a teacher copied from the restored
    student tokenizer would share all of them at the first step after the restart)."""
    K = tokenizer_lib.load_checkpoint(str(Path(base).parent / "tokenizer.pt")).cfg.quant_n
    rows = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    before = [r for r in rows if r["step"] < restarted_at]
    assert before and sum(r["codebook_moved"] for r in before) > 0
    first_after = next(r for r in rows if r["step"] == restarted_at)
    assert first_after["codes_shared"] < K, first_after
    torch.testing.assert_close(  # the saved tokenizer still holds code usage (the official buffer)
        tokenizer_lib.load_checkpoint(str(out / "tokenizer.pt")).quantize.cluster_size.sum(), torch.tensor(1.0))


def test_sonar_stays_closer_to_its_teacher_than_dcpt(tiny_corpus, tiny_base, tmp_path):
    strong = ["--lr", "3e-3", "--warmup-steps", "1", "--max-steps", "6", "--no-evaluate"]
    sonar = adapt.main(tiny_adapt_args(tiny_corpus, tiny_base, str(tmp_path / "sonar"), *strong,
                                       "--lambda-model", "20", "--codebook-grow", "4"))
    dcpt_args = tiny_adapt_args(tiny_corpus, tiny_base, str(tmp_path / "dcpt"), *strong, "--method", "dcpt")
    at = dcpt_args.index("--prior")
    del dcpt_args[at:at + 2]  # DCPT replays nothing: it needs no prior set
    dcpt = adapt.main(dcpt_args)

    for run in (sonar, dcpt):
        assert run.steps == 6
        ck = torch.load(run.model, weights_only=True)  # the official format, nothing else
        assert set(ck) == {"cfg", "model"} and all(torch.is_tensor(v) for v in ck["model"].values())
        beats.load_checkpoint(run.model)
        for name in ("summary.json", "metrics.jsonl", "bad_inputs.json", "tokenizer.pt", "predictor.pt"):
            assert (Path(run.output) / name).exists(), name
    assert dcpt.final_metrics["replay_share"] == 0.0 and sonar.final_metrics["replay_share"] == 0.5
    assert dcpt.config.prior is None and dcpt.data["prior_clips"] == 0
    ran = {k: getattr(dcpt.config, k) for k in ("replay_ratio", "lambda_tok", "lambda_model", "codebook_reanchor",
                                           "codebook_grow")}
    assert ran == {"replay_ratio": 0.0, "lambda_tok": 0.0, "lambda_model": 0.0, "codebook_reanchor": False,
                   "codebook_grow": 0}  # summary.json records what ran
    replay = json.loads((Path(sonar.output) / "summary.json").read_text())["data"]
    assert len(replay["strata_shares"]) == len(replay["strata_sizes"]) and sum(replay["strata_shares"]) == pytest.approx(1, abs=1e-3)
    assert 1.0 <= replay["effective_strata"] <= len(replay["strata_shares"]) and 1.0 <= replay["max_oversampling"] <= 4.0
    assert "loss_model" in sonar.final_metrics and "loss_model" not in dcpt.final_metrics
    # SONAR grew the tokenizer by 4 codes (the new domain is quantized worse than the prior).
    base_codes = tokenizer_lib.load_checkpoint(str(Path(tiny_base).parent / "tokenizer.pt")).cfg.quant_n
    assert tokenizer_lib.load_checkpoint(sonar.tokenizer).cfg.quant_n == base_codes + 4
    assert tokenizer_lib.load_checkpoint(dcpt.tokenizer).cfg.quant_n == base_codes
    d_sonar = _teacher_distance(sonar.model, tiny_base, tiny_corpus)
    d_dcpt = _teacher_distance(dcpt.model, tiny_base, tiny_corpus)
    assert d_sonar < d_dcpt, (d_sonar, d_dcpt)


def test_killed_worker_restarts_from_checkpoint_and_resume_is_harmless(tiny_corpus, tiny_base, tmp_path, monkeypatch):
    out = tmp_path / "run"
    monkeypatch.setenv("SONAR_INJECT_FAILURE_AT_STEP", "3")
    first = adapt.main(tiny_adapt_args(tiny_corpus, tiny_base, str(out), "--max-steps", "6", "--no-evaluate"))
    assert (out / ".injected_failure").exists()  # the worker really died at step 3
    assert first.steps == 6
    steps = [json.loads(l)["step"] for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps[-1] == 6 and 3 in steps  # step 3 was retrained after the restart from step 2
    _assert_teacher_codebook_is_the_starting_one(out, tiny_base, restarted_at=3)
    weights = beats.load_checkpoint(first.model).state_dict()

    monkeypatch.delenv("SONAR_INJECT_FAILURE_AT_STEP")
    with pytest.raises(FileExistsError, match="--resume"):
        adapt.main(tiny_adapt_args(tiny_corpus, tiny_base, str(out), "--max-steps", "6", "--no-evaluate"))
    again = adapt.main(tiny_adapt_args(tiny_corpus, tiny_base, str(out), "--max-steps", "6", "--no-evaluate",
                                       "--resume"))
    assert again.steps == 6
    after = beats.load_checkpoint(again.model).state_dict()
    assert all(torch.equal(weights[k], after[k]) for k in weights)


def test_stop_after_pauses_and_resume_continues_the_same_run(tiny_corpus, tiny_base, tmp_path, capfd):
    from sonar_ray.train.metrics import WANDB_ID_FILE
    from sonar_ray.train.schedule import build_optimizer, warmup_cosine

    out = tmp_path / "paused"
    args = tiny_adapt_args(tiny_corpus, tiny_base, str(out), "--max-steps", "4", "--warmup-steps", "1",
                           "--lr", "1e-3", "--no-evaluate")
    capfd.readouterr()  # the session fixtures' output
    first = adapt.main([*args, "--stop-after", "2"])
    console = "".join(capfd.readouterr())
    assert_readable_console(console)  # workers' lines and Ray's chatter stay in the log files
    # progress bars are off in the test session (TQDM_DISABLE, read when tqdm is imported); test_job_submit sees them
    assert "== sonar adaptation to 'speech'" in console
    assert first.steps == 2 and json.loads((out / "progress.json").read_text()) == {"safe_step": 2}
    paused = beats.load_checkpoint(first.model).state_dict()
    run_id = (out / WANDB_ID_FILE).read_text()

    second = adapt.main([*args, "--stop-after", "4", "--resume"])
    assert second.steps == 4
    assert (out / WANDB_ID_FILE).read_text() == run_id  # the continued run logs to the same W&B run
    rows = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]  # continued at step 3: nothing retrained
    # One cosine schedule over max_steps=4 across both invocations (no second warm-up).
    opt = build_optimizer([torch.nn.Parameter(torch.zeros(2, 2))], lr=1e-3, weight_decay=0.0)
    schedule = warmup_cosine(opt, warmup_steps=1, total_steps=4)
    expected = []
    for _ in range(4):
        opt.step()
        schedule.step()
        expected.append(schedule.get_last_lr()[0])
    assert [r["lr"] for r in rows] == pytest.approx(expected)
    after = beats.load_checkpoint(second.model).state_dict()
    assert any(not torch.equal(paused[k], after[k]) for k in paused)  # steps 3-4 trained the paused model
    _assert_teacher_codebook_is_the_starting_one(out, tiny_base, restarted_at=3)  # --resume (a Tune rung)


def test_bad_inputs_fail_before_any_worker_starts(tiny_corpus, tiny_base, tmp_path):
    with pytest.raises(FileNotFoundError, match="base checkpoint"):
        adapt.main(tiny_adapt_args(tiny_corpus, str(tmp_path / "missing.pt"), str(tmp_path / "a")))
    wrong = tmp_path / "wrong.pt"
    ck = torch.load(tiny_base, weights_only=True)
    ck["model"]["encoder.layer_norm.weight"] = torch.zeros(3)
    torch.save(ck, wrong)
    with pytest.raises(ValueError, match="encoder.layer_norm.weight"):
        adapt.main(tiny_adapt_args(tiny_corpus, str(wrong), str(tmp_path / "b")))
    with pytest.raises(ValueError, match="no rows for domain"):
        adapt.main(tiny_adapt_args(tiny_corpus, tiny_base, str(tmp_path / "c"), "--domain", "no-such-domain"))
    assert not (tmp_path / "b" / "ray").exists() and not (tmp_path / "c" / "ray").exists()
