"""SONAR self-distillation losses: pure functions of student and (frozen) teacher outputs.

Teacher inputs are detached here, so gradients reach only the student whatever the caller passes.
Positions are compared one-to-one: when the student encodes only visible patches, run the teacher on
the same visible patches (same `positions`) or gather its full-sequence outputs at `ids_keep`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def _masked_mean(values: Tensor, mask: Tensor | None) -> Tensor:
    """values (B, P), mask (B, P) bool True = counts -> scalar mean over counted entries."""
    if mask is None:
        return values.mean()
    return (values * mask).sum() / mask.sum().clamp(min=1)


def token_distill_loss(student_logits: Tensor, teacher_logits: Tensor, mask: Tensor | None = None,
                       temperature: float = 1.0, codes: Tensor | None = None) -> Tensor:
    """Token-level distillation: KL(teacher || student) of predicted code distributions, at `temperature`.

    student_logits (B, P, K_s) and teacher_logits (B, P, K_t) come from the student's and the
    teacher's label predictors on the same visible patches; the loss is the mean over the patches in
    `mask` (B, P) bool (e.g. PatchMask.target), scaled by temperature**2 (Hinton) so gradients keep
    their size. Unlike cross-entropy to hard labels it carries the teacher's whole belief over codes,
    and it is exactly 0 when the student's logits equal the teacher's.
    `codes` (K_t,) bool keeps only the codes that still mean what they meant to the teacher (both
    distributions renormalised over them); a grown student (K_s > K_t) is compared on the first K_t.
    """
    K_t = teacher_logits.shape[-1]
    s, t = student_logits[..., :K_t].float() / temperature, teacher_logits.detach().float() / temperature
    if codes is not None and not codes.all():  # all shared (the usual case): nothing to drop, no copy
        if not codes.any():  # every code moved: the teacher has nothing left to say about them
            return s.sum() * 0.0
        s, t = s[..., codes], t[..., codes]  # (B, P, K_shared)
    log_p_s = F.log_softmax(s, dim=-1)  # (B, P, K)
    log_p_t = F.log_softmax(t, dim=-1)  # (B, P, K)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(-1)  # (B, P)
    return _masked_mean(kl, mask) * temperature**2


def feature_distill_loss(student_layers: Sequence[Tensor], teacher_layers: Sequence[Tensor],
                         padding_mask: Tensor | None = None, kind: str = "cosine",
                         layers: Sequence[int] = (-1,)) -> Tensor:
    """Mean over the chosen `layers` of a per-patch feature distance, non-padded patches only.

    *_layers: per-layer outputs (B, P, D) (BEATs.encode's layer_results); padding_mask (B, P) True = padded.
    kind "cosine": 1 - cos(student, teacher); "mse": mean squared error over D.
    """
    if kind not in ("cosine", "mse"):
        raise ValueError(f"kind must be 'cosine' or 'mse', got {kind!r}")
    keep = None if padding_mask is None else ~padding_mask  # (B, P)
    total = 0.0
    for i in layers:
        s, t = student_layers[i].float(), teacher_layers[i].detach().float()  # (B, P, D)
        if kind == "cosine":
            # 1 - cos written as half the squared distance of unit vectors: exactly 0 when s == t.
            dist = 0.5 * (F.normalize(s, dim=-1) - F.normalize(t, dim=-1)).pow(2).sum(-1)  # (B, P)
        else:
            dist = (s - t).pow(2).mean(-1)  # (B, P)
        total = total + _masked_mean(dist, keep)
    return total / len(layers)
