"""Every job writes its bad-input report: pre-training too, before any training starts."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from sonar_ray.train.pretrain import HealthGateError, PretrainConfig, pretrain


def test_pretraining_reports_a_corrupt_file_before_any_training(ray_local, tmp_path):
    audio = tmp_path / "audio"
    audio.mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        sf.write(audio / f"clip-{i:02d}.wav", (0.3 * rng.standard_normal(16000)).astype(np.float32), 16000)
    (audio / "corrupt.wav").write_bytes(b"RIFF" + rng.bytes(3000))
    out = tmp_path / "base"
    # 12 clips hold out 1: too few to judge the gates on, so pre-training stops before its first stage.
    with pytest.raises(HealthGateError, match="held-out"):
        pretrain(PretrainConfig(data=str(audio), domain="", output=str(out), clip_seconds=0.5, wandb=False))
    report = json.loads((out / "bad_inputs.json").read_text())
    assert report["total"] == 1 and report["files"][0]["path"].endswith("corrupt.wav")
    assert not (out / "iter1").exists()
