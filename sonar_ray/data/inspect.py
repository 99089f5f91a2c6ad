"""The one Ray Data pass over a manifest: decode each file once, record validity and duration, and
(when asked) a mean-pooled clip embedding; cached as Parquet beside the data and reused.

Embeddings come from the starting BEATs model when one is given (mean of the last layer over the
real patches of `sonar_ray.audio.features`, as evaluation pools), else from mean log-mel fbank: a model-free stand-in that still separates
spectrally different strata.

Why not `ray.data.read_audio`: one unreadable file fails its read task, and it neither resamples
nor reports per-file reasons; here every file yields a row, good or bad. Each file is isolated: any
error while reading it (even one the decoder did not foresee) becomes that file's reason.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging

import numpy as np
import pandas as pd

from sonar_ray import storage
from sonar_ray.data.decode import SAMPLE_RATE, BadAudio, fit_length, scan
from sonar_ray.data.fetch import read_audio
from sonar_ray.data.pool import EmbedPool, device, run_pool

log = logging.getLogger(__name__)
CACHE_VERSION = 3  # 3: model embeddings pool the data contract's real patches


class ClipInspector:
    """Ray Data callable (one instance per pool actor, so the model loads once, onto its GPU if it has one)."""

    def __init__(self, clip_seconds: float, min_seconds: float, max_seconds: float, embed: bool,
                 model_uri: str | None):
        self.clip_seconds, self.clip_samples = clip_seconds, int(round(clip_seconds * SAMPLE_RATE))
        self.min_seconds, self.max_seconds, self.embed = min_seconds, max_seconds, embed
        self.model, self.device = None, device()
        if embed and model_uri:
            from sonar_ray.models.beats import load_checkpoint

            self.model = load_checkpoint(model_uri).eval().to(self.device)
        if embed:  # a fixed width lets batches without any good clip still emit a NaN block
            self.dim = self._embed(np.zeros((1, self.clip_samples), np.float32), np.array([self.clip_samples])).shape[1]

    def _embed(self, waves: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        import torch

        from sonar_ray.audio.features import clip_features, normalize_fbank, patch_padding_mask

        with torch.no_grad():
            fbank, mask = clip_features(waves, lengths)  # (B, T, 128), (B, T)
            fbank, mask = fbank.to(self.device), mask.to(self.device)
            if self.model is None:
                x, keep = fbank, (~mask).float()  # (B, T, 128), (B, T)
            else:
                padded = patch_padding_mask(mask, self.model.cfg.input_patch_size)  # (B, P)
                x, _ = self.model.encode(self.model.embed(normalize_fbank(fbank)), padded)  # (B, P, D)
                keep = (~padded).float()
            return ((x * keep.unsqueeze(-1)).sum(1) / keep.sum(1, keepdim=True).clamp(min=1)).cpu().numpy()  # (B, D)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(batch["uri"])
        reason, duration = np.full(n, "", dtype=object), np.full(n, np.nan)
        rate, channels = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
        clips, lengths, good = [], [], []
        keep = self.clip_seconds if self.embed else 0.0
        for i, uri in enumerate(batch["uri"]):
            try:
                d = read_audio(str(uri), lambda f: scan(f, self.min_seconds, self.max_seconds, keep))
            except BadAudio as e:
                reason[i] = e.reason
                continue
            except Exception as e:  # noqa: BLE001 - one file's surprise must not end the pass
                log.warning("skipping %s: %s: %s", uri, type(e).__name__, e)
                reason[i] = "decode_error"
                continue
            duration[i], rate[i], channels[i] = d.duration, d.source_rate, d.channels
            if self.embed:
                clip, length = fit_length(d.wave, self.clip_samples)
                clips.append(clip)
                lengths.append(length)
            good.append(i)
        out = {"row": batch["row"], "uri": batch["uri"], "reason": reason, "duration": duration, "sample_rate": rate, "channels": channels}
        if self.embed:
            out["embedding"] = np.full((n, self.dim), np.nan, dtype=np.float32)
            if good:
                out["embedding"][good] = self._embed(np.stack(clips), np.asarray(lengths, dtype=np.int64))
        return out


def _cache_key(df: pd.DataFrame, clip_seconds: float, min_seconds: float, max_seconds: float, embed: bool,
               model_uri: str | None) -> str:
    model = None
    if embed and model_uri:
        fs, path = storage.filesystem(model_uri)
        model = [model_uri, fs.info(path).get("size")]
    identity = {"v": CACHE_VERSION, "files": df["uri"].tolist(), "sizes": df["size"].tolist() if "size" in df else None,
                "clip": clip_seconds, "min": min_seconds, "max": max_seconds, "embed": embed, "model": model}
    return hashlib.sha1(json.dumps(identity, default=str).encode()).hexdigest()[:16]


def inspect_files(df: pd.DataFrame, cache_dir: str, *, clip_seconds: float, min_seconds: float,
                  max_seconds: float, embed: bool = False, model_uri: str | None = None,
                  pool: EmbedPool | None = None) -> pd.DataFrame:
    """`df` (with `uri`) + columns reason ('' = good), duration, sample_rate, channels[, embedding].

    Runs on `pool` (default `EmbedPool()`); cached at `<cache_dir>/inspect-<key>.parquet`, keyed by the
    file list, clip settings and model (not by the pool: it does not change the numbers).
    """
    key = _cache_key(df, clip_seconds, min_seconds, max_seconds, embed, model_uri)
    cache_uri = storage.join(cache_dir, f"inspect-{key}.parquet")
    if storage.exists(cache_uri):
        found = pd.read_parquet(io.BytesIO(storage.read_bytes(cache_uri)))
    else:
        kwargs = dict(clip_seconds=clip_seconds, min_seconds=min_seconds, max_seconds=max_seconds, embed=embed,
                      model_uri=model_uri)
        cols = run_pool([{"uri": u} for u in df["uri"]], ClipInspector, kwargs, pool or EmbedPool(),
                        desc="inspect", unit="file")
        if "embedding" in cols:  # one list per row, as Parquet stores it
            cols["embedding"] = list(cols["embedding"])
        buf = io.BytesIO()
        pd.DataFrame(cols).to_parquet(buf, index=False)
        found = pd.read_parquet(io.BytesIO(buf.getvalue()))  # same dtypes as a cache hit
        try:
            storage.write_bytes_atomic(cache_uri, buf.getvalue())
        except OSError as e:  # a read-only data location must not stop the run
            log.warning("could not cache the inspection at %s: %s", cache_uri, e)
    found = found.drop_duplicates("uri").set_index("uri")
    out = df.drop(columns=[c for c in found.columns if c in df.columns and c != "uri"])
    return out.join(found, on="uri")
