"""BEATs tokenizer training: EMA vector quantizer + a feature estimator that predicts the teacher.

tokenizer.quantize_input(fbank) -> L2-normalize -> nearest unit code (EMA-updated, k-means-initialized)
-> straight-through -> FeatureEstimator (small transformer) -> cosine loss to the teacher BEATs model's
last-layer features at every non-padded patch, plus a commitment loss pulling the encoder toward its
codes. The codebook lives in the official tensors `tokenizer.quantize.embedding.{weight, cluster_size,
embed_avg, initted}`; only `ema_update` / `kmeans_init` write them (no gradients reach them).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sonar_ray.objectives.codebook import assign


@torch.no_grad()
def kmeans_init(embedding: nn.Module, z: Tensor, iters: int = 10, generator: torch.Generator | None = None) -> None:
    """Spherical k-means on unit features z (N, d) -> weight, embed_avg, cluster_size; sets initted=1."""
    K = embedding.weight.shape[0]
    codes = z[torch.randint(len(z), (K,), generator=generator, device=z.device)]  # (K, d), with replacement if N < K
    for _ in range(iters):
        labels, _ = assign(z, codes)
        counts = torch.bincount(labels, minlength=K).float()  # (K,)
        sums = torch.zeros_like(codes).index_add_(0, labels, z)  # (K, d)
        codes = torch.where(counts[:, None] > 0, F.normalize(sums, dim=-1), codes)  # empty clusters keep their seed
    labels, _ = assign(z, codes)
    counts = torch.bincount(labels, minlength=K).float()
    embedding.weight.copy_(codes)
    embedding.cluster_size.copy_(counts)
    embedding.embed_avg.copy_(codes * counts.clamp(min=1)[:, None])
    embedding.initted.fill_(1)


@torch.no_grad()
def ema_update(embedding: nn.Module, z: Tensor, labels: Tensor, decay: float = 0.99) -> None:
    """EMA of per-code counts and sums from unit features z (N, d) assigned to labels (N,).

    cluster_size and embed_avg are EMAs of per-batch counts and feature sums; weight is the unit
    direction of embed_avg (the mean's direction, since dividing by the count does not change it).
    """
    K = embedding.weight.shape[0]
    counts = torch.bincount(labels, minlength=K).float()  # (K,)
    sums = torch.zeros_like(embedding.embed_avg).index_add_(0, labels, z.to(embedding.embed_avg.dtype))  # (K, d)
    embedding.cluster_size.mul_(decay).add_(counts, alpha=1 - decay)
    embedding.embed_avg.mul_(decay).add_(sums, alpha=1 - decay)
    alive = embedding.embed_avg.norm(dim=-1, keepdim=True) > 1e-12  # (K, 1): never normalize a zero vector
    embedding.weight.copy_(torch.where(alive, F.normalize(embedding.embed_avg, dim=-1), embedding.weight))


class FeatureEstimator(nn.Module):
    """Quantized codes (B, P, quant_dim) -> estimated teacher features (B, P, out_dim)."""

    def __init__(self, quant_dim: int, out_dim: int, dim: int = 256, layers: int = 3, heads: int = 4):
        super().__init__()
        self.in_proj = nn.Linear(quant_dim, dim)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(dim, heads, 4 * dim, 0.0, activation="gelu", batch_first=True, norm_first=True)
            for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.out_proj = nn.Linear(dim, out_dim)

    def forward(self, q: Tensor, padding_mask: Tensor | None = None) -> Tensor:
        # Patches carry no position code here: the codes must hold the information on their own.
        h = self.in_proj(q)  # (B, P, dim)
        for layer in self.layers:
            h = layer(h, src_key_padding_mask=padding_mask)  # (B, P, dim)
        return self.out_proj(self.norm(h))  # (B, P, out_dim)


def tokenizer_loss(tokenizer: nn.Module, estimator: FeatureEstimator, fbank: Tensor, teacher_features: Tensor,
                   padding_mask: Tensor | None = None, frame_padding_mask: Tensor | None = None,
                   commit_weight: float = 1.0, decay: float = 0.99, update: bool = True) -> dict:
    """One tokenizer training step's loss; with `update` also k-means init (first call) and the codebook EMA.

    fbank (B, T, 128) normalized; teacher_features (B, P, D) (teacher's last layer, no grad);
    padding_mask (B, P) patch-level True = padded; frame_padding_mask (B, T) for quantize_input.
    Returns loss, cosine (1 - cos to the teacher), commit, labels (B, P), label_coverage.
    """
    q_in = tokenizer.quantize_input(fbank, frame_padding_mask)  # (B, P, d)
    z = F.normalize(q_in.float(), dim=-1)  # (B, P, d)
    keep = torch.ones(z.shape[:2], dtype=torch.bool, device=z.device) if padding_mask is None else ~padding_mask
    z_valid = z[keep]  # (N, d): only real patches train the codebook
    emb = tokenizer.quantize.embedding
    if update and int(emb.initted) == 0:
        kmeans_init(emb, z_valid.detach())
    labels, _ = tokenizer.quantize.nearest_codes(z.detach())  # (B, P): same arithmetic as labels_from_fbank
    z_q = emb.weight.float()[labels]  # (B, P, d)
    commit = (z[keep] - z_q[keep]).pow(2).sum(-1).mean()  # encoder moves toward its codes
    z_st = z + (z_q - z).detach()  # (B, P, d) straight-through: forward = code, gradient -> encoder
    est = estimator(z_st, padding_mask)  # (B, P, D)
    cos = F.cosine_similarity(est.float(), teacher_features.detach().float(), dim=-1)  # (B, P)
    cosine = (1 - cos)[keep].mean()
    if update:
        ema_update(emb, z_valid.detach(), labels[keep], decay)
    return {"loss": cosine + commit_weight * commit, "cosine": cosine, "commit": commit, "labels": labels,
            "label_coverage": labels[keep].unique().numel() / emb.weight.shape[0]}
