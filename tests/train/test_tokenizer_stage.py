"""The tokenizer stage writes through sonar_ray.storage like the other fits: an s3:// output works."""

from __future__ import annotations

import os

import pytest
import torch

from sonar_ray import storage
from sonar_ray.data import DataConfig
from sonar_ray.models import beats, tokenizer as tokenizer_lib
from sonar_ray.objectives.tokenizer_training import TokenizerTrainConfig
from sonar_ray.train.tokenizer_loop import fit_tokenizer


@pytest.mark.slow
def test_the_tokenizer_stage_trains_into_a_bucket(s3_server, ray_local, s3_bucket, tiny_corpus, tmp_path,
                                                   monkeypatch):
    monkeypatch.chdir(tmp_path)  # the old code made a local "s3:" folder under the working directory
    torch.manual_seed(0)
    teacher = f"{s3_bucket}/iter1/model.pt"
    beats.save_checkpoint(beats.BEATs(beats.BEATsConfig.preset("tiny")), teacher)
    data = DataConfig(new_uri=tiny_corpus, new_domain="prior", batch_size=4, clip_seconds=0.5, policy="uniform",
                      cache_uri=str(tmp_path / "cache"))
    cfg = TokenizerTrainConfig(steps=4, quant_n=8, quant_dim=8, encoder_layers=1, warmup_share=0.5, kmeans_batches=1)
    uri, _ = fit_tokenizer(teacher, data, f"{s3_bucket}/tokenizer", cfg)
    assert uri == f"{s3_bucket}/tokenizer/tokenizer.pt"
    tok = tokenizer_lib.load_checkpoint(uri)  # official format, read back from the bucket
    assert tok.num_codes == 8 and int(tok.quantize.embedding.initted) == 1
    assert storage.exists(f"{s3_bucket}/tokenizer/ray/tokenizer")  # Ray's run folder is on the bucket too
    assert not os.path.exists(tmp_path / "s3:")
