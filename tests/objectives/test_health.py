"""The collapse alarms: information gain over the label marginal, majority accuracy, label perplexity."""

import math

import torch

from sonar_ray.models.beats import BEATs, BEATsConfig
from sonar_ray.objectives.health import entropy, label_health, masked_prediction_health
from sonar_ray.objectives.masked_prediction import MaskedTokenModel
from sonar_ray.objectives.predictor import LabelPredictor
from sonar_ray.objectives.random_projection import RandomProjectionConfig, RandomProjectionTokenizer


def test_label_health_counts_codes():
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    h = label_health(labels, num_codes=8)
    assert math.isclose(h["label_perplexity"], 4.0, rel_tol=1e-9) and h["live_code_share"] == 0.5
    assert math.isclose(entropy(torch.tensor([5, 0, 0])), 0.0, abs_tol=1e-12)


def test_a_model_that_predicts_the_marginal_gains_nothing(fbank_batch):
    torch.manual_seed(0)
    tok = RandomProjectionTokenizer(RandomProjectionConfig(num_codes=32))
    encoder = BEATs(BEATsConfig.preset("tiny"))
    predictor = LabelPredictor(encoder.cfg.encoder_embed_dim, 32, dim=32, layers=1)
    student = MaskedTokenModel(encoder, predictor)
    pad = torch.zeros(fbank_batch.shape[:2], dtype=torch.bool)
    labels = tok.labels_from_fbank(fbank_batch)
    # the head ignores its input and outputs the log label marginal of these clips
    counts = torch.bincount(labels.flatten(), minlength=32).double()
    with torch.no_grad():
        predictor.head.weight.zero_()
        predictor.head.bias.copy_((counts / counts.sum()).clamp(min=1e-12).log().float())
    h = masked_prediction_health(student, tok, fbank_batch, pad)
    # masked targets are a sample of all patches: their marginal differs a little from the whole batch's
    assert abs(h["info_gain"]) < 0.1, h
    assert math.isclose(h["masked_accuracy"], h["majority_accuracy"], abs_tol=0.05), h
    assert h["clips"] == len(fbank_batch) and 0 < h["live_code_share"] <= 1
    # the same fixed masks every call: identical numbers
    assert masked_prediction_health(student, tok, fbank_batch, pad) == h
    # a model that learned nothing about the marginal is worse than it: negative gain
    with torch.no_grad():
        predictor.head.bias.zero_()
    assert masked_prediction_health(student, tok, fbank_batch, pad)["info_gain"] < -0.1
