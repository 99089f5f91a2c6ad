"""SONAR's codebook policy during a run, on every rank alike.

At a fresh start `survey_codebook` measures the prior's code usage (what re-anchoring protects) and
decides growth once; each update step `reanchor` moves starved codes toward the new domain. Sums are
all-reduced and rank 0's codes broadcast, so all replicas keep one codebook.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sonar_ray.audio.features import normalize_fbank, patch_padding_mask
from sonar_ray.objectives.codebook import assign, grow_tokenizer, new_codes
from sonar_ray.train.assemble import Models
from sonar_ray.train.collectives import broadcast_, summed
from sonar_ray.train.config import TrainConfig

SURVEY_BATCHES = 8  # first batches per rank that measure prior code usage and decide growth
GROW_MARGIN = 1.2   # grow when new-domain patches are quantized this much worse than prior ones


@torch.no_grad()
def survey_codebook(cfg: TrainConfig, models: Models, batches: list[dict], device, measure_usage: bool) -> dict:
    """At a fresh start, from the first batches of every rank (sums all-reduced, so all ranks agree):

    * prior usage: each code's share of the labels of the prior clips' patches, what re-anchoring
      protects (when `measure_usage`: the tokenizer recorded none from a previous stage);
    * growth, decided once: add `codebook_grow` codes (never past `codebook_max_codes`) if new-domain
      patches are quantized GROW_MARGIN x worse than prior ones; rank 0 seeds them, all ranks take them.
    """
    tok = models.tokenizer
    codes = tok.codebook.float()  # (K, d)
    K = len(codes)
    stats = torch.zeros(K + 4, device=device)  # prior label counts (K), new err sum, new n, prior err sum, prior n
    z_new = []
    for batch in batches:
        fbank = normalize_fbank(batch["fbank"].to(device))  # (B, T, 128)
        frame_pad = batch["padding_mask"].to(device)  # (B, T)
        patch_pad = patch_padding_mask(frame_pad, models.student.encoder.cfg.input_patch_size)  # (B, P)
        z = tok.quantize_input(fbank, frame_pad)[~patch_pad]  # (N, d) real patches
        prior = batch["is_prior"].to(device)[:, None].expand_as(patch_pad)[~patch_pad]  # (N,)
        labels, err = assign(F.normalize(z.float(), dim=-1), codes)  # (N,), (N,)
        stats[:K] += torch.bincount(labels[prior], minlength=K)
        stats[K:] += torch.stack([err[~prior].sum(), (~prior).sum(), err[prior].sum(), prior.sum()]).float()
        z_new.append(z[~prior])
    stats = summed(stats)
    info = {}
    if measure_usage:
        counts = stats[:K]
        models.codebook.usage.copy_(counts / counts.sum() if counts.sum() > 0 else torch.full_like(counts, 1.0 / K))
        info["prior_codes_used"] = int((counts > 0).sum())
    if cfg.codebook_grow > 0:
        err_new, err_prior = stats[K] / stats[K + 1].clamp(min=1), stats[K + 2] / stats[K + 3].clamp(min=1)
        n_new = min(cfg.codebook_grow, cfg.codebook_max_codes - K)
        # No prior clips to compare with: grow as asked.
        grow = n_new > 0 and bool(stats[K + 3] == 0 or err_new > GROW_MARGIN * err_prior)
        info.update(codebook_err_new=float(err_new), codebook_err_prior=float(err_prior), codebook_grown=0)
        if grow:
            generator = torch.Generator(device="cpu").manual_seed(cfg.seed)
            added = new_codes(codes.cpu(), torch.cat(z_new).cpu(), n_new, generator=generator)  # CPU generator
            added = added.to(device)
            broadcast_(added)
            grow_tokenizer(tok, added)
            models.student.predictor.grow(n_new)
            models.codebook.grow(n_new)
            info["codebook_grown"] = n_new
    return info


@torch.no_grad()
def reanchor(models: Models, features: torch.Tensor) -> dict:
    """One re-anchoring step from every clip's real-patch quantizer inputs (N, d); rank 0's moves win."""
    info = models.codebook.step(models.tokenizer.quantize.embedding, features, reduce=summed)
    broadcast_(models.tokenizer.quantize.embedding.weight.data)
    broadcast_(models.tokenizer.quantize.embedding.embed_avg.data)
    return {"codebook_err": torch.tensor(info["error"]),  # over every clip of the batch
            "codebook_moved": torch.tensor(float(info["moved"]))}
