"""Held-out slices and the pre-training health gates."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from sonar_ray.data import PreparedData
from sonar_ray.train.health import split_holdout
from sonar_ray.train.pretrain import HealthGateError, PretrainConfig, _gate, gate_failures


def _wavs(folder, n, prefix):
    rng = np.random.default_rng(0)
    uris = []
    for i in range(n):
        path = folder / f"{prefix}-{i:03d}.wav"
        sf.write(path, (0.3 * rng.standard_normal(16000)).astype(np.float32), 16000)
        uris.append(str(path))
    return uris


def _frame(uris, strata=None):
    df = pd.DataFrame({"uri": uris, "duration": 1.0})
    df["stratum"] = 0 if strata is None else strata
    return df


def test_holdout_is_stable_set_aside_from_both_sources_and_keeps_every_stratum(tmp_path):
    new, prior = _wavs(tmp_path, 40, "new"), _wavs(tmp_path, 24, "prior")
    strata = [0] * 22 + [1, 1]  # a tiny stratum must keep at least one clip
    prepared = PreparedData(_frame(new), _frame(prior, strata), np.array([0.5, 0.5]), pd.DataFrame())
    rest, holdout = split_holdout(prepared, clip_seconds=0.5, limit=32)
    again, _ = split_holdout(prepared, clip_seconds=0.5, limit=32)
    assert rest.new["uri"].tolist() == again.new["uri"].tolist()  # a resumed run holds out the same clips
    assert len(rest.new) == 35 and len(rest.prior) == 21  # 1/8 of each source
    assert set(rest.new["uri"]).isdisjoint(set(new) - set(rest.new["uri"]))
    assert (rest.prior["stratum"] == 1).any()
    fb, pad = holdout.clips["new"]
    assert fb.shape == (5, 48, 128) and pad.shape == (5, 48) and holdout.clips["prior"][0].shape[0] == 3


def test_pretraining_holds_out_its_one_source_as_prior(tmp_path):
    uris = _wavs(tmp_path, 16, "p")
    prepared = PreparedData(_frame(uris), _frame(uris), np.ones(1), pd.DataFrame())
    rest, holdout = split_holdout(prepared, clip_seconds=0.5)
    assert set(holdout.clips) == {"prior"} and len(rest.new) == len(rest.prior) == 14
    one = PreparedData(_frame(uris[:1]), _frame(uris[:1]), np.ones(1), pd.DataFrame())
    rest, holdout = split_holdout(one, clip_seconds=0.5)
    assert len(rest.new) == 1 and holdout.clips == {}  # a single clip is trained on, never held out


HEALTHY = {"info_gain": 1.2, "masked_accuracy": 0.4, "label_perplexity": 40.0, "live_code_share": 0.7}


def test_gates_name_the_failing_metric_and_value():
    cfg = PretrainConfig()
    assert gate_failures(cfg, "iter1", {"prior": HEALTHY}) == []
    assert gate_failures(cfg, "tokenizer", {"prior": HEALTHY}) == []
    collapsed = {**HEALTHY, "info_gain": 0.03, "masked_accuracy": 0.88, "label_perplexity": 1.7}
    assert gate_failures(cfg, "iter1", {"prior": collapsed}) == [
        "information gain 0.030 nats < 0.5 (prior)"]
    assert any("masked accuracy 0.880" in f for f in gate_failures(cfg, "iter2", {"prior": collapsed}))
    with pytest.raises(HealthGateError, match=r"stage tokenizer failed its health gate: label perplexity 1\.7 < 16") as e:
        _gate(cfg, "tokenizer", {"prior": collapsed})
    assert "\n" not in str(e.value) and "--no-gates" in str(e.value)
    _gate(PretrainConfig(gates=False), "tokenizer", {"prior": collapsed})  # the expert override ships it
    assert gate_failures(cfg, "iter1", {}) == ["no held-out clips to measure it on"]
    with pytest.raises(ValueError, match="iter2_accuracy"):
        PretrainConfig(iter2_accuracy=[0.9, 0.1])


def test_gates_on_too_few_held_out_clips_stop_before_any_training(s3_server, ray_local, tiny_corpus, tmp_path):
    """The tiny corpus holds out 1 prior clip: a healthy 100-step stage scored -3.6 nats on it."""
    from pathlib import Path

    from sonar_ray.config import parse_cli
    from sonar_ray.train.pretrain import MIN_GATE_CLIPS, pretrain

    args = ["--data", tiny_corpus, "--output", str(tmp_path / "base"), "--preset", "tiny", "--no-wandb"]
    with pytest.raises(HealthGateError, match=rf"only 1 held-out clip\(s\) .* \(need {MIN_GATE_CLIPS}"):
        pretrain(parse_cli(PretrainConfig, args))
    assert not (Path(tmp_path) / "base" / "iter1").exists()  # nothing was trained
