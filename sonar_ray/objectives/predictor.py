"""LabelPredictor: visible-patch encodings -> code logits at every patch (MAE-style decoder)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def sinusoid_2d(num_patches: int, freq_blocks: int, dim: int, device=None) -> Tensor:
    """Fixed (time block, frequency block) position code for time-block-major patches -> (P, dim).

    Half the channels encode the time block, half the frequency block, so a mask token knows which
    band it stands for (code labels depend strongly on the band) and no maximum length is needed.
    """
    idx = torch.arange(num_patches, device=device)
    half = dim // 2
    out = []
    for pos in (idx // freq_blocks, idx % freq_blocks):
        freqs = torch.exp(-math.log(10000.0) * torch.arange(0, half, 2, device=device) / half)  # (half/2,)
        angle = pos[:, None].float() * freqs[None]  # (P, half/2)
        out += [angle.sin(), angle.cos()]
    return torch.cat(out, dim=-1)  # (P, dim)


class LabelPredictor(nn.Module):
    def __init__(self, in_dim: int, num_codes: int, dim: int = 256, layers: int = 2, heads: int = 4,
                 freq_blocks: int = 8, dropout: float = 0.0):
        super().__init__()
        if dim % 4:
            raise ValueError(f"dim must be a multiple of 4 for the 2-D position code, got {dim}")
        self.freq_blocks = freq_blocks
        self.in_proj = nn.Linear(in_dim, dim)
        self.mask_embed = nn.Parameter(torch.zeros(dim))
        nn.init.normal_(self.mask_embed, std=0.02)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout, activation="gelu",
                                       batch_first=True, norm_first=True)
            for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_codes)

    @property
    def num_codes(self) -> int:
        return self.head.out_features

    def forward(self, x_vis: Tensor, ids_keep: Tensor, num_patches: int,
                padding_mask: Tensor | None = None) -> Tensor:
        """x_vis (B, Pv, in_dim) at original positions ids_keep (B, Pv) -> logits (B, P, K).

        `padding_mask` (B, P), True = padded: those patches are excluded as attention keys.
        """
        B, Pv, _ = x_vis.shape
        h_vis = self.in_proj(x_vis)  # (B, Pv, dim)
        dim = h_vis.shape[-1]
        h = self.mask_embed.to(h_vis.dtype).expand(B, num_patches, dim)  # (B, P, dim)
        h = h.scatter(1, ids_keep[..., None].expand(-1, -1, dim), h_vis)  # (B, P, dim)
        h = h + sinusoid_2d(num_patches, self.freq_blocks, dim, h.device).to(h.dtype)  # (B, P, dim)
        for layer in self.layers:
            h = layer(h, src_key_padding_mask=padding_mask)  # (B, P, dim)
        return self.head(self.norm(h))  # (B, P, K)

    @torch.no_grad()
    def grow(self, n_new: int) -> None:
        """Add `n_new` output codes; rows of the old codes stay bit-identical.

        The head is a new Parameter, so rebuild the optimizer (or its param groups) afterwards.
        """
        old = self.head
        new = nn.Linear(old.in_features, old.out_features + n_new,
                        device=old.weight.device, dtype=old.weight.dtype)
        new.weight[: old.out_features] = old.weight
        new.bias[: old.out_features] = old.bias
        # New codes start at the average old bias, so they are neither favoured nor starved.
        new.bias[old.out_features:] = old.bias.mean()
        self.head = new
