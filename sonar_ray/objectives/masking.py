"""MAE-style random patch masking for masked-token prediction.

Each clip hides `mask_ratio` of its *real* (non-padded) patches. To keep the batch rectangular every
clip gets the same number of visible slots Pv; clips with more padding fill their spare slots with
padded patches, which the encoder ignores through `visible_padding`. Padded patches are never
prediction targets.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class PatchMask:
    ids_keep: Tensor         # (B, Pv) int64, original patch indices of the visible patches, ascending
    visible_padding: Tensor  # (B, Pv) bool, True where a visible slot holds a padded patch
    masked: Tensor           # (B, P) bool, True = hidden from the encoder
    target: Tensor           # (B, P) bool, masked and not padded: where the loss is taken

    @property
    def num_visible(self) -> int:
        return self.ids_keep.shape[1]


def random_patch_mask(batch_size: int, num_patches: int, mask_ratio: float = 0.75,
                      padding_mask: Tensor | None = None, generator: torch.Generator | None = None,
                      device: torch.device | str | None = None) -> PatchMask:
    """Draw a random mask per clip. `padding_mask` (B, P) bool, True = padded patch.

    Every clip with at least one real patch keeps at least one real patch visible (an all-padded
    visible set would make the encoder's attention undefined).
    """
    if not 0.0 <= mask_ratio < 1.0:
        raise ValueError(f"mask_ratio must be in [0, 1), got {mask_ratio}")
    B, P = batch_size, num_patches
    if padding_mask is None:
        padding_mask = torch.zeros(B, P, dtype=torch.bool, device=device)
    device = padding_mask.device
    noise = torch.rand(B, P, generator=generator, device=generator.device if generator else device)
    noise = noise.to(device)  # (B, P)

    valid = ~padding_mask  # (B, P)
    num_valid = valid.sum(1)  # (B,)
    num_keep = (num_valid.float() * (1.0 - mask_ratio)).round().long()
    num_keep = torch.minimum(num_keep.clamp(min=1), num_valid)  # (B,)
    Pv = int(num_keep.max())

    # Rank real patches by noise; the first num_keep of them are visible.
    rank = torch.argsort(torch.argsort(noise.masked_fill(padding_mask, 2.0), dim=1), dim=1)  # (B, P)
    chosen = valid & (rank < num_keep[:, None])  # (B, P)
    # Visible slots: chosen real patches first, then padded patches as filler, then (only when a clip
    # has too few padded patches to fill Pv, a rounding edge case) further real patches.
    group = torch.where(chosen, 0.0, torch.where(padding_mask, 1.0, 2.0))  # (B, P)
    ids_keep = torch.argsort(group + noise, dim=1)[:, :Pv]  # (B, Pv)
    ids_keep = ids_keep.sort(dim=1).values  # ascending: encoders see patches in their original order

    masked = torch.ones(B, P, dtype=torch.bool, device=device)
    masked.scatter_(1, ids_keep, False)  # (B, P)
    return PatchMask(ids_keep=ids_keep, visible_padding=padding_mask.gather(1, ids_keep),
                     masked=masked, target=masked & valid)


def gather_patches(x: Tensor, ids: Tensor) -> Tensor:
    """x (B, P, D), ids (B, P') -> (B, P', D)."""
    return x.gather(1, ids[..., None].expand(-1, -1, x.shape[-1]))
