"""Frozen-encoder embeddings: mean-pooled over the valid (unpadded) patches of each clip.

Valid patches are the data contract's (`sonar_ray.audio.features`): a time block (16 frames, all its
frequency blocks) is valid when all its frames are real, exactly the patches the clip would have on
its own; not the quirky mask `BEATs.extract_features` returns. We run preprocess -> embed -> encode
with that mask, so it also drives attention (padded keys excluded) and the zeroing before the
positional convolution: a clip's embedding does not depend on what it was batched with (up to float
rounding), and training and inspection count the same patches.

Two paths, one callable: `embed_clips` runs `ClipEmbedder` (decode + embed a batch of clip URIs) in
the driver for a handful of clips, else on an `EmbedPool` (Ray Data actors, on GPUs when the pool
asks for them); both give the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from sonar_ray.audio.features import FRAME_LENGTH, FRAME_SHIFT, frame_padding_mask, patch_padding_mask
from sonar_ray.data.decode import BadAudio, decode
from sonar_ray.data.fetch import fetch_bytes
from sonar_ray.data.pool import EmbedPool, device, run_pool

IN_DRIVER_MAX_CLIPS = 8  # the driver embeds this many sooner than a pool starts (actors, one model load each)


@dataclass
class EmbeddingSpec:
    layer: str = "last"  # "last", "average" (mean over every layer's output) or a layer index ("0", "-2", ...)
    max_seconds: float = 10.0  # clips are cropped to their first max_seconds

    def cache_fields(self) -> dict:
        """What the numbers depend on (the pool and its batch size do not)."""
        return {"layer": self.layer, "max_seconds": self.max_seconds}


def min_samples(patch_frames: int) -> int:
    """Shortest input with one full time block of patches."""
    return FRAME_LENGTH + (patch_frames - 1) * FRAME_SHIFT


def pad_batch(waves: list[np.ndarray], patch_frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Clips -> (source (B, N) zero-padded, real sample counts (B,)).

    Clips shorter than one time block are zero-padded up to it and the padding counted as real
    (silence), so every clip has at least one valid patch.
    """
    lengths = torch.tensor([max(len(w), min_samples(patch_frames)) for w in waves])
    source = torch.zeros(len(waves), int(lengths.max()))  # (B, N)
    for i, w in enumerate(waves):
        source[i, : len(w)] = torch.from_numpy(np.asarray(w, dtype=np.float32))
    return source, lengths


def _select_layer(x: torch.Tensor, layer_results: list[torch.Tensor], layer: str) -> torch.Tensor:
    if layer == "last":
        return x
    if layer == "average":
        return torch.stack(list(layer_results)).mean(0)
    try:
        index = int(layer)
    except ValueError:
        raise ValueError(f"layer must be 'last', 'average' or an integer index, got {layer!r}") from None
    return layer_results[index]


@torch.no_grad()
def encode_all_layers(model, waves: list[np.ndarray]
                      ) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
    """Encode a batch of clips -> (output (B, P, D), every layer's output [(B, P, D)], padded (B, P) bool)."""
    patch_frames = model.cfg.input_patch_size
    device = next(model.parameters()).device
    source, lengths = pad_batch(waves, patch_frames)
    fbank = model.preprocess(source.to(device))  # (B, T, 128), normalized
    x = model.embed(fbank)  # (B, P, D)
    padded = patch_padding_mask(frame_padding_mask(lengths.to(device), fbank.shape[1]), patch_frames)  # (B, P)
    x, layer_results = model.encode(x, padding_mask=padded)
    return x, layer_results, padded


def encode_frames(model, waves: list[np.ndarray], layer: str = "last") -> tuple[torch.Tensor, torch.Tensor]:
    """Encode a batch of clips -> (features (B, P, D) of the chosen layer, padded (B, P) bool)."""
    x, layer_results, padded = encode_all_layers(model, waves)
    return _select_layer(x, layer_results, layer), padded


def masked_mean(features: torch.Tensor, padded: torch.Tensor) -> torch.Tensor:
    """(B, P, D), (B, P) -> (B, D) mean over the valid patches."""
    keep = (~padded).unsqueeze(-1).to(features.dtype)  # (B, P, 1)
    return (features * keep).sum(1) / keep.sum(1)


def embed_waveforms(model, waves: list[np.ndarray], layer: str = "last",
                    batch_size: int = EmbedPool.batch_size) -> np.ndarray:
    """Clips (mono 16 kHz float in [-1, 1]) -> (N, D) float32 pooled embeddings, in input order.

    Clips are batched by length (less padding to compute); results do not depend on the batching.
    """
    order = np.argsort([len(w) for w in waves], kind="stable")
    out: list[np.ndarray | None] = [None] * len(waves)
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        features, padded = encode_frames(model, [waves[i] for i in idx], layer)
        for i, e in zip(idx, masked_mean(features, padded).cpu().numpy()):
            out[i] = e
    return np.stack(out).astype(np.float32)


class ClipEmbedder:
    """Decode + embed a batch of clip URIs with one frozen model (on the GPU Ray gave its actor, if any); a Ray
    Data callable class.

    Batches are dicts of numpy arrays with a `uri` column; the result keeps every input column and adds
    `embedding` (float32 (B, D), zeros for unusable clips) and `error` ("" or the BadAudio reason).
    """

    def __init__(self, checkpoint: str, spec: EmbeddingSpec, batch_size: int = EmbedPool.batch_size):
        from sonar_ray.models.beats import load_checkpoint

        self.model = load_checkpoint(checkpoint).eval().to(device())
        self.spec, self.batch_size = spec, batch_size

    def _load(self, uri: str) -> np.ndarray:
        return decode(fetch_bytes(uri), seconds=self.spec.max_seconds).wave

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        waves, errors = [], []
        for uri in batch["uri"]:
            try:
                waves.append(self._load(str(uri)))
                errors.append("")
            except BadAudio as e:
                waves.append(None)
                errors.append(e.reason)
        ok = [i for i, w in enumerate(waves) if w is not None]
        dim = self.model.cfg.encoder_embed_dim
        embedding = np.zeros((len(waves), dim), dtype=np.float32)
        if ok:
            embedding[ok] = embed_waveforms(self.model, [waves[i] for i in ok], self.spec.layer, self.batch_size)
        return {**batch, "embedding": embedding, "error": np.array(errors, dtype=object)}


def embed_clips(checkpoint: str, uris: list[str], spec: EmbeddingSpec, pool: EmbedPool | None = None, *,
                desc: str = "embed") -> tuple[np.ndarray, list[str]]:
    """Embed clips -> ((N, D) float32, per-clip error reasons, "" = fine), in input order.

    Up to IN_DRIVER_MAX_CLIPS clips: one `ClipEmbedder` in this process. More: Ray Data `map_batches`
    over `pool` (default `EmbedPool()`), each actor loading `checkpoint`, with a progress bar `desc`.
    """
    pool = pool or EmbedPool()
    if len(uris) <= IN_DRIVER_MAX_CLIPS:
        out = ClipEmbedder(checkpoint, spec, pool.batch_size)({"uri": np.array(uris, dtype=object)})
    else:
        out = run_pool([{"uri": u} for u in uris], ClipEmbedder, {"checkpoint": checkpoint, "spec": spec,
                                                                  "batch_size": pool.batch_size}, pool, desc=desc)
    return out["embedding"].astype(np.float32), [str(e) for e in out["error"]]
