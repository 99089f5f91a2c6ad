"""BEATs tokenizer training: EMA vector quantizer + a feature estimator that predicts the teacher.

tokenizer.quantize_input(fbank) -> L2-normalize -> nearest unit code (EMA-updated, k-means-initialized)
-> straight-through -> FeatureEstimator (small transformer with 2-D patch positions) -> cosine loss to the
teacher BEATs model's last-layer features at every non-padded patch, plus a commitment loss pulling the
encoder toward its codes. The codebook lives in the official tensors `tokenizer.quantize.embedding.{weight,
cluster_size, embed_avg, initted}`; only `ema_update` / `kmeans_init` / `restart_dead_codes` write them.

Three things keep the codebook from collapsing onto a few codes (measured: one code took 88 % of the
patches when k-means ran on a random encoder's first batch and nothing revived unused codes):
- warm-up: the first steps train encoder and estimator on the continuous (unquantized) features, so
  k-means clusters features that already carry the teacher's information (`TokenizerTrainer`);
- k-means on many patches of several batches, not one;
- dead-code restarts: a code whose EMA count falls below `dead_count` assignments per step jumps onto a
  random current feature (as in Jukebox / CVQ-VAE), so codes the moving encoder left behind come back.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sonar_ray.audio.features import patch_padding_mask
from sonar_ray.objectives.codebook import assign
from sonar_ray.objectives.predictor import sinusoid_2d


@torch.no_grad()
def kmeans_init(embedding: nn.Module, z: Tensor, iters: int = 10, generator: torch.Generator | None = None,
                batches: int = 1) -> None:
    """Spherical k-means on unit features z (N, d) -> weight, embed_avg, cluster_size; sets initted=1.

    z pooled from `batches` batches: counts are divided by it, so cluster_size starts on the per-batch
    scale the EMA then keeps (else dead codes would take `batches` times longer to be noticed)."""
    K = embedding.weight.shape[0]
    codes = z[torch.randint(len(z), (K,), generator=generator).to(z.device)]  # (K, d), with replacement if N < K
    for _ in range(iters):
        labels, _ = assign(z, codes)
        counts = torch.bincount(labels, minlength=K).float()  # (K,)
        sums = torch.zeros_like(codes).index_add_(0, labels, z)  # (K, d)
        codes = torch.where(counts[:, None] > 0, F.normalize(sums, dim=-1), codes)  # empty clusters keep their seed
    labels, _ = assign(z, codes)
    counts = torch.bincount(labels, minlength=K).float() / batches
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


@torch.no_grad()
def restart_dead_codes(embedding: nn.Module, z: Tensor, dead_count: float = 1.0,
                       generator: torch.Generator | None = None) -> int:
    """Codes whose EMA count (`cluster_size`) is below `dead_count` take random features of z (N, d);
    returns how many were restarted. Their count restarts at `dead_count`, so one restart buys time."""
    dead = (embedding.cluster_size < dead_count).nonzero().flatten()  # (n,)
    if not len(dead) or not len(z):
        return 0
    pick = torch.randint(len(z), (len(dead),), generator=generator).to(z.device)  # a CPU generator, any device
    fresh = F.normalize(z[pick].float(), dim=-1).to(embedding.weight.dtype)  # (n, d)
    embedding.weight[dead] = fresh
    embedding.embed_avg[dead] = fresh * dead_count
    embedding.cluster_size[dead] = dead_count
    return len(dead)


class FeatureEstimator(nn.Module):
    """Quantized codes (B, P, quant_dim) -> estimated teacher features (B, P, out_dim).

    Patches carry a fixed 2-D (time block, frequency band) position code, as the official tokenizer's
    estimator has positional information: without it a code must also encode where it sits.
    """

    def __init__(self, quant_dim: int, out_dim: int, dim: int = 256, layers: int = 3, heads: int = 4,
                 freq_blocks: int = 8):
        super().__init__()
        self.freq_blocks = freq_blocks
        self.in_proj = nn.Linear(quant_dim, dim)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(dim, heads, 4 * dim, 0.0, activation="gelu", batch_first=True, norm_first=True)
            for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.out_proj = nn.Linear(dim, out_dim)

    def forward(self, q: Tensor, padding_mask: Tensor | None = None) -> Tensor:
        h = self.in_proj(q)  # (B, P, dim)
        h = h + sinusoid_2d(h.shape[1], self.freq_blocks, h.shape[-1], h.device).to(h.dtype)
        for layer in self.layers:
            h = layer(h, src_key_padding_mask=padding_mask)  # (B, P, dim)
        return self.out_proj(self.norm(h))  # (B, P, out_dim)


def tokenizer_loss(tokenizer: nn.Module, estimator: FeatureEstimator, fbank: Tensor, teacher_features: Tensor,
                   padding_mask: Tensor | None = None, frame_padding_mask: Tensor | None = None,
                   commit_weight: float = 1.0, decay: float = 0.99, update: bool = True, quantize: bool = True,
                   dead_count: float = 1.0, generator: torch.Generator | None = None) -> dict:
    """One tokenizer training step's loss; with `update` also the codebook EMA and dead-code restarts.

    fbank (B, T, 128) normalized; teacher_features (B, P, D) (teacher's last layer, no grad);
    padding_mask (B, P) patch-level True = padded; frame_padding_mask (B, T) for quantize_input.
    `quantize=False` is the warm-up: the estimator reads the continuous unit features and the codebook is
    left alone. The codebook must be initialized (`kmeans_init`) before the first quantized step.
    Returns loss, cosine (1 - cos to the teacher), commit, labels (B, P), label_coverage, restarted, z_valid.
    """
    q_in = tokenizer.quantize_input(fbank, frame_padding_mask)  # (B, P, d)
    z = F.normalize(q_in.float(), dim=-1)  # (B, P, d)
    keep = torch.ones(z.shape[:2], dtype=torch.bool, device=z.device) if padding_mask is None else ~padding_mask
    z_valid = z[keep]  # (N, d): only real patches train the codebook
    emb = tokenizer.quantize.embedding
    out = {"restarted": 0, "z_valid": z_valid.detach()}
    if quantize:
        if int(emb.initted) == 0:
            raise RuntimeError("the codebook is not initialized: run kmeans_init on warmed-up features first")
        labels, _ = tokenizer.quantize.nearest_codes(z.detach())  # (B, P): same arithmetic as labels_from_fbank
        z_q = emb.weight.float()[labels]  # (B, P, d)
        commit = (z[keep] - z_q[keep]).pow(2).sum(-1).mean()  # encoder moves toward its codes
        z_in = z + (z_q - z).detach()  # (B, P, d) straight-through: forward = code, gradient -> encoder
        out.update(labels=labels, label_coverage=labels[keep].unique().numel() / emb.weight.shape[0])
    else:
        commit = torch.zeros((), device=z.device)
        z_in = z
    est = estimator(z_in, padding_mask)  # (B, P, D)
    cos = F.cosine_similarity(est.float(), teacher_features.detach().float(), dim=-1)  # (B, P)
    cosine = (1 - cos)[keep].mean()
    if quantize and update:
        ema_update(emb, z_valid.detach(), out["labels"][keep], decay)
        out["restarted"] = restart_dead_codes(emb, z_valid.detach(), dead_count, generator)
    return {**out, "loss": cosine + commit_weight * commit, "cosine": cosine, "commit": commit}


@dataclass
class TokenizerTrainConfig:
    steps: int = 100
    lr: float = 5e-4
    quant_n: int = 256          # codes; small corpora cannot populate BEATs' 1024
    quant_dim: int = 32
    encoder_layers: int = 2     # the tokenizer is a smaller copy of the teacher's architecture
    warmup_share: float = 0.25  # first steps train on unquantized features; k-means then clusters them
    kmeans_batches: int = 4     # batches of warmed-up features k-means initializes the codebook from
    commit_weight: float = 0.25
    ema_decay: float = 0.95     # codebook EMA; short runs need a short memory for dead codes to show
    dead_count: float = 1.0     # EMA assignments per step below which a code is restarted
    seed: int = 0


def tokenizer_config(teacher_cfg, cfg: TokenizerTrainConfig):
    """The tokenizer: a smaller copy of the teacher's architecture with cfg's codebook."""
    from sonar_ray.models import tokenizer as tokenizer_lib

    fields = {k: v for k, v in teacher_cfg.to_dict().items() if k in tokenizer_lib.TokenizerConfig.__dataclass_fields__}
    fields.update(encoder_layers=cfg.encoder_layers, quant_n=cfg.quant_n, quant_dim=cfg.quant_dim)
    return tokenizer_lib.TokenizerConfig.from_dict(fields)


class TokenizerTrainer:
    """Warm-up on continuous features, k-means on the last warm-up batches, then VQ with restarts.

    `train_step(fbank, frame_padding_mask)` (normalized fbank, on `device`) runs one optimizer step and
    returns scalars. Random draws come from a CPU generator, so a seed gives the same codebook on any device.
    """

    def __init__(self, cfg: TokenizerTrainConfig, teacher: nn.Module, device: torch.device | str = "cpu"):
        from sonar_ray.models import tokenizer as tokenizer_lib
        from sonar_ray.train.schedule import build_optimizer, warmup_cosine

        torch.manual_seed(cfg.seed)
        self.cfg, self.teacher = cfg, teacher.eval().requires_grad_(False).to(device)
        self.tokenizer = tokenizer_lib.Tokenizer(tokenizer_config(teacher.cfg, cfg)).train().to(device)
        self.estimator = FeatureEstimator(cfg.quant_dim, teacher.cfg.encoder_embed_dim).to(device)
        self.params = [p for m in (self.tokenizer, self.estimator) for p in m.parameters() if p.requires_grad]
        self.optimizer = build_optimizer(self.params, cfg.lr, 0.01)
        self.scheduler = warmup_cosine(self.optimizer, max(1, cfg.steps // 10), cfg.steps)
        self.warmup = int(cfg.steps * cfg.warmup_share)
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.warm_features: list[Tensor] = []
        self.step, self.restarted = 0, 0

    def _init_codebook(self, fbank: Tensor, frame_pad: Tensor, patch_pad: Tensor) -> None:
        if not self.warm_features:  # no warm-up asked for: cluster this batch
            with torch.no_grad():
                q = self.tokenizer.quantize_input(fbank, frame_pad)
            self.warm_features = [F.normalize(q[~patch_pad].float(), dim=-1)]
        kmeans_init(self.tokenizer.quantize.embedding, torch.cat(self.warm_features), generator=self.generator,
                    batches=len(self.warm_features))
        self.warm_features = []

    def train_step(self, fbank: Tensor, frame_pad: Tensor) -> dict:
        with torch.no_grad():
            x = self.teacher.embed(fbank)  # (B, P, D)
            patch_pad = patch_padding_mask(frame_pad, self.teacher.cfg.input_patch_size)  # (B, P) real patches
            target, _ = self.teacher.encode(x, patch_pad)  # (B, P, D) teacher's last layer
        quantize = self.step >= self.warmup
        if quantize and not int(self.tokenizer.quantize.embedding.initted):
            self._init_codebook(fbank, frame_pad, patch_pad)
        out = tokenizer_loss(self.tokenizer, self.estimator, fbank, target, patch_pad, frame_pad,
                             commit_weight=self.cfg.commit_weight, decay=self.cfg.ema_decay, quantize=quantize,
                             dead_count=self.cfg.dead_count, generator=self.generator)
        if not quantize and self.step >= self.warmup - self.cfg.kmeans_batches:
            self.warm_features.append(out["z_valid"])
        self.optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        self.restarted += out["restarted"]
        return {"step": self.step, "tok_loss": float(out["loss"]), "tok_cosine": float(out["cosine"]),
                "tok_coverage": float(out.get("label_coverage", 0.0)), "tok_restarted": self.restarted}
