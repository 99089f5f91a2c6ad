"""The replication's plan is typed configs for the library pipeline: each arm's TrainConfig (and the
base's PretrainConfig) is exactly what the string flags the benchmark used to pass to jobs/adapt.py
and jobs/pretrain.py parsed to, so finished work folders resume (their run_config.json matches)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from benchmarks.replication.protocol import METHODS, TUNED, ReplicateConfig, base_run, plan
from sonar_ray.config import parse_cli
from sonar_ray.train.config import TrainConfig
from sonar_ray.train.pretrain import PretrainConfig

REPO = Path(__file__).resolve().parents[2]
SMOKE = str(REPO / "benchmarks" / "replicate_configs" / "smoke.yaml")

# The benchmark's flags before the split (benchmarks/replicate.py, Runner.__call__), for comparison.
OLD_METHOD_FLAGS = {
    "dcpt": ["--method", "dcpt"],
    "dcpt_prior": ["--method", "dcpt", "--domain", "prior"],
    "replay_only": ["--method", "sonar", "--lambda-tok", "0", "--lambda-model", "0", "--no-codebook-reanchor",
                    "--codebook-grow", "0"],
    "sonar": ["--method", "sonar"],
    "sonar_distill_all": ["--method", "sonar", "--distill-scope-tok", "all", "--distill-scope-model", "all"],
    "sonar_uniform_replay": ["--method", "sonar", "--replay-policy", "uniform"],
    "sonar_no_tok_distill": ["--method", "sonar", "--lambda-tok", "0"],
    "sonar_no_model_distill": ["--method", "sonar", "--lambda-model", "0"],
    "sonar_no_codebook": ["--method", "sonar", "--no-codebook-reanchor", "--codebook-grow", "0"],
}


def _common(c: ReplicateConfig) -> list[str]:
    return ["--batch-size", str(c.batch_size), "--clip-seconds", str(c.clip_seconds), "--num-workers",
            str(c.num_workers), *(["--use-gpu"] if c.use_gpu else []), "--resume", "--no-wandb",
            *(["--ray-address", c.ray_address] if c.ray_address else [])]


def test_every_arm_is_the_config_its_old_flags_gave(tmp_path):
    further = tmp_path / "further.yaml"
    further.write_text(yaml.safe_dump({"mask_ratio": 0.6}))
    c = parse_cli(ReplicateConfig, ["--config", SMOKE, "--work", str(tmp_path), "--methods", *METHODS,
                                    "--sequence", "--adapt-config", str(further)])
    runs = plan(c, "/corpus", "/base/model.pt")
    assert [r.id for r in runs] == [f"{m}/speech-s0" for m in METHODS]
    for run in runs:
        old = parse_cli(TrainConfig, [
            "--domain", "speech", "--data", "/corpus", "--prior", "/corpus", "--probes", "/corpus",
            "--base", "/base/model.pt", "--output", str(tmp_path / "runs" / run.id), "--seed", "0",
            "--max-steps", str(c.adapt_steps), "--lr", str(c.adapt_lr), "--warmup-steps", str(c.adapt_warmup),
            "--log-every", str(c.log_every), "--checkpoint-every", str(max(1, c.adapt_steps // 2)), "--no-evaluate",
            *_common(c), "--mask-ratio", "0.6",
            *(["--replay-ratio", str(c.replay_ratio), "--codebook-grow", str(c.codebook_grow)]
              if not run.method.startswith("dcpt") else []), *OLD_METHOD_FLAGS[run.method]])
        assert run.config == old, run.id
    by_method = {r.method: r.config for r in runs}
    assert by_method["dcpt"].replay_ratio == 0.0 and by_method["sonar"].codebook_grow == 4
    no_codebook = by_method["sonar_no_codebook"]
    assert (no_codebook.codebook_grow, no_codebook.codebook_reanchor) == (0, False)
    control = by_method["dcpt_prior"]  # the LR-damage control: DCPT's steps and LR, on prior data
    assert (control.domain, control.replay_ratio, control.lr) == ("prior", 0.0, by_method["dcpt"].lr)
    replay = by_method["replay_only"]
    assert (replay.lambda_tok, replay.lambda_model, replay.codebook_grow, replay.replay_ratio) == (0, 0, 0, c.replay_ratio)


def test_extra_seeds_run_only_the_arms_the_claims_rest_on(tmp_path):
    c = parse_cli(ReplicateConfig, ["--config", SMOKE, "--work", str(tmp_path), "--sequence", "--methods", "dcpt",
                                    "sonar", "sonar_no_codebook", "--seeds", "0", "--extra-seeds", "1", "2"])
    assert [r.id for r in plan(c, "/corpus", "/base/model.pt")] == [
        "dcpt/speech-s0", "sonar/speech-s0", "sonar_no_codebook/speech-s0",
        "dcpt/speech-s1", "sonar/speech-s1", "dcpt/speech-s2", "sonar/speech-s2"]


def test_the_base_is_the_config_its_old_flags_gave(tmp_path):
    c = parse_cli(ReplicateConfig, ["--config", SMOKE, "--work", str(tmp_path)])
    old = parse_cli(PretrainConfig, [
        "--data", "/corpus", "--domain", "prior", "--output", str(tmp_path / "runs" / "base"), "--preset", c.preset,
        "--seed", "0", "--iter1-steps", str(c.pretrain_iter1_steps), "--tokenizer-steps",
        str(c.pretrain_tokenizer_steps), "--iter2-steps", str(c.pretrain_iter2_steps), "--tokenizer-codes",
        str(c.tokenizer_codes), "--lr", str(c.pretrain_lr), "--no-gates", *_common(c)])
    assert base_run(c, "/corpus").config == old


def test_an_unknown_arm_fails_at_parse_time():
    with pytest.raises(ValueError, match="unknown methods"):
        parse_cli(ReplicateConfig, ["--methods", "sonar", "sonar_no_such_thing"])


def test_a_sweeps_recommendation_adds_the_tuned_arm_at_the_protocols_steps_and_lr(tmp_path):
    recommended = tmp_path / "recommended.json"
    recommended.write_text(json.dumps({"replay_ratio": 0.3, "lambda_tok": 0.25, "replay_policy": "uniform",
                                       "max_steps": 9999, "lr": 1.0, "eval_split": "valid"}))
    c = parse_cli(ReplicateConfig, ["--config", SMOKE, "--work", str(tmp_path), "--sequence", "--methods", "sonar",
                                    "--seeds", "0", "1", "--extra-seeds", "2", "--tuned", str(recommended)])
    runs = {r.id: r for r in plan(c, "/corpus", "/base/model.pt")}
    assert [i for i in runs if i.startswith(TUNED)] == [f"{TUNED}/speech-s0", f"{TUNED}/speech-s1"]  # not the extra seed
    tuned, sonar = runs[f"{TUNED}/speech-s1"].config, runs["sonar/speech-s1"].config
    assert (tuned.replay_ratio, tuned.lambda_tok, tuned.replay_policy) == (0.3, 0.25, "uniform")
    # Only the searched knobs come from the file: steps, LR, outputs and the rest are the protocol's sonar arm's.
    assert replace(tuned, replay_ratio=sonar.replay_ratio, lambda_tok=sonar.lambda_tok, replay_policy=sonar.replay_policy,
                   output=sonar.output) == sonar
    with pytest.raises(ValueError, match="--tuned"):
        parse_cli(ReplicateConfig, ["--config", SMOKE, "--tuned", str(tmp_path / "missing.json")])
