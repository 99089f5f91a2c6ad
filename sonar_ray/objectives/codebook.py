"""Online clustered codebook (CVQ-VAE style) for SONAR: keep codes alive on new domains, grow if needed.

Codes are unit vectors compared with L2-normalized features, as in the BEATs tokenizer. The functions
operate on the tokenizer's official tensors `quantize.embedding.{weight, embed_avg, cluster_size}`
(weight = direction of embed_avg is the invariant `tokenizer_training.ema_update` keeps).

* `OnlineCodebook.step`: EMA of each code's share of assignments; a code with usage u is moved toward
  an anchor feature with alpha = exp(-u * K * 10 / (1 - decay) - 1e-3): healthy codes do not move,
  starved codes jump onto the data. Anchors are batch features drawn with probability proportional to
  their quantization error (CVQ-VAE's "closest feature" anchor sends identical codes to identical
  anchors forever, and lets starved codes settle on data that is already well quantized).
* `new_codes` / `grow_tokenizer`: append codes seeded k-means++-style on badly quantized features;
  old codes stay bit-identical, and the state dict loads into a Tokenizer with the new quant_n.
* `recorded_usage` / `record_usage`: each code's usage share lives in the official buffer
  `quantize.cluster_size` of a saved tokenizer (all zeros until a SONAR stage has written it), so
  the next stage of a stream starts from the usage the previous one ended with.

Growth is decided once, at the start of an adaptation, by the training loop (see
`sonar_ray.train.growth.survey_codebook`): new-domain error above 1.2x the prior error, both averaged
over the first batches of every rank.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sonar_ray.models.tokenizer import nearest_codes


def assign(features: Tensor, codes: Tensor) -> tuple[Tensor, Tensor]:
    """Unit features (N, d), unit codes (K, d) -> (labels (N,), squared L2 distance to the code (N,))."""
    labels, d2 = nearest_codes(features, codes)  # (N,), (N, K)
    return labels, d2.gather(1, labels[:, None]).squeeze(1).clamp(min=0)


class OnlineCodebook(nn.Module):
    """Usage tracker + re-anchoring for a K-code codebook.

    `usage` starts at zero as in CVQ-VAE: the first batch moves every code it does not use. For
    continual training pass the prior-domain share of each code instead (e.g. cluster_size /
    cluster_size.sum() measured on prior data): codes the prior domain needs then keep their place
    until they go unused for a few hundred steps (decay 0.99), while never-used codes move at once.
    """

    def __init__(self, num_codes: int, decay: float = 0.99, usage: Tensor | None = None,
                 generator: torch.Generator | None = None):
        super().__init__()
        self.decay = decay
        self.generator = generator
        self.register_buffer("usage", torch.zeros(num_codes) if usage is None else usage.clone())

    @torch.no_grad()
    def step(self, embedding: nn.Module, features: Tensor,
             reduce: Callable[[Tensor], Tensor] | None = None) -> dict:
        """One update from a batch of features (N, d) (any scale; they are L2-normalized here).

        Pass the features of every clip of the batch, replayed prior clips included: usage counts
        what the data needs, and anchors (drawn by quantization error) land on what is badly served.
        `reduce` sums the per-code counts over ranks, so usage is that of the global batch.
        `embedding` holds `weight` (K, d) and `embed_avg` (K, d), changed in place.
        Returns {'error': mean squared quantization error, 'moved': codes moved by alpha > 0.5}.
        """
        z = F.normalize(features.float(), dim=-1)  # (N, d)
        codes = embedding.weight  # (K, d)
        K = codes.shape[0]
        labels, err = assign(z, codes)
        counts = torch.bincount(labels, minlength=K).float()  # (K,)
        counts = reduce(counts) if reduce is not None else counts
        share = counts / counts.sum().clamp(min=1)  # (K,)
        self.usage.mul_(self.decay).add_(share, alpha=1 - self.decay)

        alpha = torch.exp(-self.usage * K * 10.0 / (1 - self.decay) - 1e-3)[:, None]  # (K, 1)
        pick = torch.multinomial(err + 1e-12, K, replacement=True, generator=self.generator)  # (K,)
        anchors = z[pick]  # (K, d): badly quantized batch features
        moved = F.normalize((1 - alpha) * codes + alpha * anchors, dim=-1)  # (K, d)
        embedding.weight.copy_(moved)
        # Keep embed_avg's magnitude (accumulated mass) but give it the new direction.
        embedding.embed_avg.copy_(moved * embedding.embed_avg.norm(dim=-1, keepdim=True))
        return {"error": float(err.mean()), "moved": int((alpha > 0.5).sum())}

    @torch.no_grad()
    def grow(self, n_new: int) -> None:
        """Track `n_new` appended codes, starting them as healthy (a uniform share): they were seeded on data."""
        K = self.usage.numel()
        self.usage = torch.cat([self.usage, self.usage.new_full((n_new,), 1.0 / (K + n_new))])


@torch.no_grad()
def new_codes(codes: Tensor, features: Tensor, n_new: int, iters: int = 5,
              generator: torch.Generator | None = None) -> Tensor:
    """Seed `n_new` codes where `codes` (K, d) quantize `features` (N, d) worst -> (n_new, d) unit codes.

    Pass new-domain features (those whose error triggered growth). k-means++ seeding against the
    existing codes (a feature is drawn with probability proportional to its squared distance to the
    nearest code so far), then `iters` spherical k-means steps that move only the new codes.
    """
    z = F.normalize(features.float(), dim=-1)  # (N, d)
    old = codes.float()
    _, err = assign(z, old)  # (N,)
    picked = []
    for _ in range(n_new):
        i = torch.multinomial(err + 1e-12, 1, generator=generator)  # (1,)
        picked.append(z[i])
        err = torch.minimum(err, (2.0 - 2.0 * z @ z[i].T).squeeze(1).clamp(min=0))  # (N,)
    new = torch.cat(picked)  # (n_new, d)
    K = len(old)
    for _ in range(iters):
        labels, _ = assign(z, torch.cat([old, new]))  # (N,)
        won = labels >= K
        sums = torch.zeros_like(new).index_add_(0, labels[won] - K, z[won])  # (n_new, d)
        new = torch.where(sums.norm(dim=-1, keepdim=True) > 0, F.normalize(sums, dim=-1), new)
    return new.to(codes.dtype)


@torch.no_grad()
def grow_tokenizer(tokenizer: nn.Module, codes: Tensor) -> None:
    """Append unit `codes` (n_new, d) to a Tokenizer's codebook in place; old rows stay bit-identical.

    Updates every per-code tensor of the quantizer and cfg.quant_n, so
    `Tokenizer(tokenizer.cfg).load_state_dict(tokenizer.state_dict())` works. Pair it with
    `LabelPredictor.grow(n_new)` and `OnlineCodebook.grow(n_new)`.
    """
    quantize, emb = tokenizer.quantize, tokenizer.quantize.embedding
    n_new = codes.shape[0]
    counts = emb.cluster_size.new_full((n_new,), float(emb.cluster_size.mean()))
    # A new code gets an average count and embed_avg of matching mass, so EMA updates treat it like its peers.
    mass = emb.embed_avg.norm(dim=-1).mean()
    emb.weight = nn.Parameter(torch.cat([emb.weight, codes]), requires_grad=False)
    emb.embed_avg = nn.Parameter(torch.cat([emb.embed_avg, codes * mass]), requires_grad=False)
    emb.cluster_size = nn.Parameter(torch.cat([emb.cluster_size, counts]), requires_grad=False)
    quantize.cluster_size = torch.cat([quantize.cluster_size, quantize.cluster_size.new_zeros(n_new)])
    K = emb.weight.shape[0]
    quantize.num_tokens = tokenizer.cfg.quant_n = K


def recorded_usage(quantize: nn.Module) -> Tensor | None:
    """The usage share per code a previous stage wrote into `quantize.cluster_size`, or None (never written)."""
    usage = quantize.cluster_size.detach().float().clamp(min=0)
    return usage / usage.sum() if usage.sum() > 0 else None


@torch.no_grad()
def record_usage(quantize: nn.Module, usage: Tensor) -> None:
    """Write each code's usage share into the official buffer `quantize.cluster_size` (K,)."""
    quantize.cluster_size.copy_(usage.to(quantize.cluster_size))
