"""Masked-token prediction (BEATs pre-training): encode visible patches, predict codes of masked ones."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sonar_ray.objectives.masking import PatchMask, gather_patches, random_patch_mask
from sonar_ray.objectives.predictor import LabelPredictor


def masked_prediction_loss(logits: Tensor, labels: Tensor, target: Tensor,
                           padding_mask: Tensor | None = None) -> dict:
    """Cross-entropy on target patches plus diagnostics.

    logits (B, P, K); labels (B, P) int64; target (B, P) bool (masked, not padded);
    padding_mask (B, P) True = padded (for the visible-patch accuracy only).
    Returns loss, logits (N_target, K), accuracy (masked), visible_accuracy, label_coverage
    (distinct target labels / K) and pred_coverage (distinct predicted codes / K).
    """
    K = logits.shape[-1]
    logits_t = logits[target].float()  # (N, K): float32 so the loss is bf16-autocast safe
    labels_t = labels[target]  # (N,)
    with torch.no_grad():
        pred = logits.argmax(-1)  # (B, P)
        visible = ~target if padding_mask is None else ~target & ~padding_mask  # (B, P)
        hit = pred == labels  # (B, P)
        stats = {
            "accuracy": hit[target].float().mean(),
            "visible_accuracy": hit[visible].float().mean(),
            "label_coverage": labels_t.unique().numel() / K,
            "pred_coverage": pred[target].unique().numel() / K,
        }
    return {"loss": F.cross_entropy(logits_t, labels_t), "logits": logits_t, **stats}


class MaskedTokenModel(nn.Module):
    """BEATs student + LabelPredictor. `encoder` follows the sonar_ray.models.beats.BEATs contract."""

    def __init__(self, encoder: nn.Module, predictor: LabelPredictor, mask_ratio: float = 0.75):
        super().__init__()
        self.encoder = encoder
        self.predictor = predictor
        self.mask_ratio = mask_ratio

    def forward(self, fbank: Tensor, labels: Tensor, padding_mask: Tensor | None = None,
                mask: PatchMask | None = None, generator: torch.Generator | None = None) -> dict:
        """fbank (B, T, 128) normalized (BEATs.preprocess output); labels (B, P) from a tokenizer;
        padding_mask (B, P) patch-level, True = padded (BEATs.patch_padding_mask of the frame mask).

        Returns masked_prediction_loss's dict plus `mask` (the PatchMask drawn, or the one given)
        and `layer_results` (per-layer student outputs at the visible patches, for distillation).
        """
        x = self.encoder.embed(fbank)  # (B, P, D)
        B, P, _ = x.shape
        if mask is None:
            mask = random_patch_mask(B, P, self.mask_ratio, padding_mask, generator, x.device)
        x_vis = gather_patches(x, mask.ids_keep)  # (B, Pv, D)
        x_vis, layer_results = self.encoder.encode(x_vis, padding_mask=mask.visible_padding,
                                                   positions=mask.ids_keep)  # (B, Pv, D)
        logits = self.predictor(x_vis, mask.ids_keep, P, padding_mask)  # (B, P, K)
        out = masked_prediction_loss(logits, labels, mask.target, padding_mask)
        return {**out, "mask": mask, "layer_results": layer_results}
