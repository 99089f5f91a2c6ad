"""An untrained starting point of any preset, in the layout `--base` expects (model.pt, tokenizer.pt,
predictor.pt side by side): what the step-cost benchmark and the full-size (90 M) scale test train from.

The weights are random, so it measures cost, not quality: a BEATs encoder, a tokenizer of the same
preset whose codebook is spherical k-means on its own outputs for random fbank (so every code is
initialised and labels are well defined), and a fresh label predictor.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from sonar_ray.models import beats, tokenizer as tokenizer_lib
from sonar_ray.objectives.tokenizer_training import kmeans_init
from sonar_ray.train import artifacts


@torch.no_grad()
def write_start(folder: str | Path, preset: str, seed: int = 0) -> Path:
    """Write model.pt, tokenizer.pt and predictor.pt of `preset` into `folder`; returns model.pt's path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    g = torch.manual_seed(seed)
    encoder = beats.BEATs(beats.BEATsConfig.preset(preset))
    tok = tokenizer_lib.Tokenizer(tokenizer_lib.TokenizerConfig.preset(preset)).eval()
    K = tok.num_codes
    frames = 16 * max(10, -(-K // 16))  # 8 clips x frames/16 x 8 patches >= 4 patches per code
    z = tok.quantize_input(torch.randn(8, frames, 128, generator=g))  # normalised-fbank scale
    kmeans_init(tok.quantize.embedding, F.normalize(z.flatten(0, 1), dim=-1), generator=g)
    tok.quantize.cluster_size.fill_(1.0 / K)  # uniform usage: every code counts as used by the prior
    beats.save_checkpoint(encoder, str(folder / artifacts.MODEL))
    tok.save(str(folder / artifacts.TOKENIZER))
    artifacts.save_predictor(artifacts.new_predictor(encoder.cfg.encoder_embed_dim, K), str(folder / artifacts.PREDICTOR))
    return folder / artifacts.MODEL
