"""Is self-supervised pre-training learning? Cheap collapse alarms on a held-out slice.

- information gain (nats) = entropy of the label marginal on masked patches - masked cross-entropy: what the
  model knows about a hidden patch's code beyond its frequency. ~0 means it predicts the marginal.
- masked accuracy next to majority-code accuracy (the score of always guessing the commonest code).
- label perplexity and live-code share of the tokenizer on the slice: a collapsed tokenizer has a few codes.

Masks are drawn from a fixed seed, so two models (or two steps) are scored on the very same targets.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sonar_ray.audio.features import num_patches, patch_padding_mask
from sonar_ray.objectives.masking import random_patch_mask

HEALTH_SEED = 1234


def entropy(counts: Tensor) -> float:
    """Entropy in nats of the distribution given by non-negative `counts`."""
    p = counts.double() / counts.sum().clamp(min=1)
    return float(-(p * p.clamp(min=1e-30).log()).sum())


@torch.no_grad()
def label_health(labels: Tensor, num_codes: int) -> dict:
    """labels (N,) of real patches -> perplexity exp(H) and the share of codes used at least once."""
    counts = torch.bincount(labels.flatten(), minlength=num_codes)
    return {"label_perplexity": math.exp(entropy(counts)),
            "live_code_share": float((counts > 0).sum()) / num_codes}


@torch.no_grad()
def masked_prediction_health(student: nn.Module, tokenizer: nn.Module, fbank: Tensor, frame_padding_mask: Tensor,
                             batch_size: int = 32) -> dict:
    """student: MaskedTokenModel; tokenizer: any label tokenizer (`labels_from_fbank`, `num_codes`).

    fbank (N, T, 128) normalized (BEATs input scale); frame_padding_mask (N, T) True = padded.
    """
    was_training = student.training
    student.eval()
    encoder = student.encoder
    p = encoder.cfg.input_patch_size
    P = num_patches(fbank, p)
    generator = torch.Generator().manual_seed(HEALTH_SEED)
    K = student.predictor.num_codes
    ce_sum, hits, n_targets = 0.0, 0, 0
    target_labels, real_labels = [], []
    for i in range(0, len(fbank), batch_size):
        fb, fpad = fbank[i:i + batch_size], frame_padding_mask[i:i + batch_size]
        ppad = patch_padding_mask(fpad, p)  # (B, P) the data contract's real patches
        labels = tokenizer.labels_from_fbank(fb, fpad).view(len(fb), -1)  # (B, P)
        mask = random_patch_mask(len(fb), P, student.mask_ratio, ppad, generator)
        out = student(fb, labels, ppad, mask=mask)
        ce_sum += float(F.cross_entropy(out["logits"], labels[mask.target], reduction="sum"))
        hits += int((out["logits"].argmax(-1) == labels[mask.target]).sum())
        n_targets += int(mask.target.sum())
        target_labels.append(labels[mask.target])
        real_labels.append(labels[~ppad])
    student.train(was_training)
    targets = torch.cat(target_labels)
    marginal = torch.bincount(targets, minlength=K)
    masked_ce = ce_sum / max(1, n_targets)
    h = entropy(marginal)
    return {"info_gain": h - masked_ce, "masked_ce": masked_ce, "label_entropy": h,
            "masked_accuracy": hits / max(1, n_targets),
            "majority_accuracy": float(marginal.max()) / max(1, n_targets),
            **label_health(torch.cat(real_labels), K), "clips": len(fbank)}
