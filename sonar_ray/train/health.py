"""Health of a run, measured on a small held-out slice of its own data (never trained on).

`split_holdout` sets the slice aside before the stream is planned (chosen by a hash of each URI, so a resumed
run holds out the same clips); `HoldOut.measure(files)` scores a model's files on it with
`sonar_ray.objectives.health`; `check_gates` turns the numbers into a pass / a one-line failure.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from sonar_ray.audio.features import clip_features, normalize_fbank, patch_padding_mask
from sonar_ray.data import PreparedData
from sonar_ray.data.decode import SAMPLE_RATE, BadAudio, decode, fit_length
from sonar_ray.data.fetch import fetch_bytes
from sonar_ray.objectives.health import label_health, masked_prediction_health

MAX_HOLDOUT = 32  # clips per source: enough for stable codes statistics (~2,500 patches), cheap to score


def _holdout_uris(df: pd.DataFrame, limit: int) -> list[str]:
    """Up to `limit` URIs, at most 1/8 of the source and never all of it, picked by a hash of each clip's
    path within its source (not its absolute URI: the same corpus copied elsewhere holds out the same clips)."""
    n = min(limit, len(df) // 8 if len(df) >= 16 else min(1, len(df) - 1))
    names = df["path"] if "path" in df.columns else df["uri"]
    ranked = sorted(zip((hashlib.sha1(str(name).encode()).hexdigest() for name in names), map(str, df["uri"])))
    return [uri for _, uri in ranked[:max(0, n)]]


@dataclass
class HoldOut:
    """Held-out clips per source ('new', 'prior'): centre crops as normalized fbank and frame padding."""

    clips: dict[str, tuple[torch.Tensor, torch.Tensor]]

    def measure(self, files: dict, mask_ratio: float) -> dict:
        """{'new': {...}, 'prior': {...}} masked-prediction health of model.pt + tokenizer.pt + predictor.pt."""
        from sonar_ray.models import beats
        from sonar_ray.objectives.masked_prediction import MaskedTokenModel
        from sonar_ray.train import artifacts

        from sonar_ray import storage

        if not all(files.get(k) and storage.exists(files[k]) for k in ("model", "tokenizer", "predictor")):
            return {}
        tokenizer = artifacts.load_label_tokenizer(files["tokenizer"]).eval()
        predictor = artifacts.load_predictor(files["predictor"])
        if predictor.num_codes != tokenizer.num_codes:
            return {}
        student = MaskedTokenModel(beats.load_checkpoint(files["model"]), predictor, mask_ratio)
        return {name: _rounded(masked_prediction_health(student, tokenizer, fb, pad))
                for name, (fb, pad) in self.clips.items()}

    def tokenizer_health(self, tokenizer_uri: str) -> dict:
        """Label perplexity and live-code share of a tokenizer alone (the tokenizer stage)."""
        from sonar_ray.train import artifacts

        tokenizer = artifacts.load_label_tokenizer(tokenizer_uri).eval()
        out = {}
        for name, (fb, pad) in self.clips.items():
            with torch.no_grad():
                labels = tokenizer.labels_from_fbank(fb, pad)  # (N, P)
            patch_pad = patch_padding_mask(pad)  # the patches training counts
            out[name] = _rounded(label_health(labels[~patch_pad], tokenizer.num_codes))
        return out


def _rounded(d: dict) -> dict:
    return {k: round(float(v), 4) if isinstance(v, float) else v for k, v in d.items()}


def _load_clips(uris: list[str], clip_seconds: float, retries: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    num = int(round(clip_seconds * SAMPLE_RATE))
    waves, lengths = [], []
    for uri in uris:
        try:
            d = decode(fetch_bytes(uri, retries))
        except BadAudio:
            continue  # it passed inspection; a flaky read only shrinks the slice
        start = max(0, (len(d.wave) - num) // 2)
        w, n = fit_length(d.wave[start:], num)
        waves.append(w)
        lengths.append(n)
    if not waves:
        return None
    fbank, pad = clip_features(np.stack(waves), np.asarray(lengths))
    return normalize_fbank(fbank), pad


def split_holdout(prepared: PreparedData, clip_seconds: float, limit: int = MAX_HOLDOUT,
                  retries: int = 3) -> tuple[PreparedData, HoldOut]:
    """Remove the held-out clips from both sources (pre-training streams one source as both)."""
    held = {"new": _holdout_uris(prepared.new, limit)}
    if not set(prepared.prior["uri"]) <= set(prepared.new["uri"]):
        held["prior"] = _holdout_uris(prepared.prior, limit)
        # Never empty a replay stratum: its share would have no clips left to draw.
        strata = prepared.prior.set_index("uri")["stratum"]
        left = prepared.prior[~prepared.prior["uri"].isin(held["prior"])]["stratum"].value_counts()
        held["prior"] = [u for u in held["prior"] if left.get(strata[u], 0) > 0]
    drop = set().union(*held.values())
    new = prepared.new[~prepared.new["uri"].isin(drop)].reset_index(drop=True)
    prior = prepared.prior[~prepared.prior["uri"].isin(drop)].reset_index(drop=True)
    clips = {name: c for name, uris in held.items() if (c := _load_clips(uris, clip_seconds, retries)) is not None}
    if "prior" not in held and "new" in clips and not prepared.prior.empty:
        clips["prior"] = clips.pop("new")  # pre-training: its one source is the prior data
    return PreparedData(new, prior, prepared.shares, prepared.bad), HoldOut(clips)
