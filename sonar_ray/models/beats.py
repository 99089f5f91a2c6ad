"""BEATs: the audio encoder, with the optional fine-tuned classification head.

Official config fields, parameter names and checkpoint format ({'cfg', 'model'}); the encoder
itself lives in `sonar_ray.models.transformer` (shared with the tokenizer).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn as nn

from sonar_ray.models.transformer import (FBANK_MEAN, FBANK_STD, AudioTransformer, EncoderConfig, load_weights,
                                          read_checkpoint, save_model)


@dataclass
class BEATsConfig(EncoderConfig):
    """Official BEATsConfig: the encoder fields plus these."""
    layer_wise_gradient_decay_ratio: float = 1.0  # gradient into layer i scaled by ratio^(L - i); forward unchanged
    finetuned_model: bool = False                 # with the classification head `predictor`
    predictor_dropout: float = 0.1
    predictor_class: int = 527                    # AudioSet classes

    MODEL_PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "base": dict(layer_wise_gradient_decay_ratio=0.6),
        "small": dict(layer_wise_gradient_decay_ratio=0.6),
        "tiny": dict(layer_wise_gradient_decay_ratio=0.6),
    }


class BEATs(AudioTransformer):
    """BEATs encoder; `extract_features` follows the official conventions exactly."""

    def __init__(self, cfg: BEATsConfig):
        super().__init__(cfg, cfg.layer_wise_gradient_decay_ratio)
        self.predictor = None
        if cfg.finetuned_model:
            self.predictor_dropout = nn.Dropout(cfg.predictor_dropout)
            self.predictor = nn.Linear(cfg.encoder_embed_dim, cfg.predictor_class)

    def extract_features(self, source: torch.Tensor, padding_mask: torch.Tensor | None = None,
                         fbank_mean: float = FBANK_MEAN, fbank_std: float = FBANK_STD
                         ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Waveforms (B, N), sample mask (B, N) True = padded ->
        (features (B, P, D), patch mask (B, P) or None), or with the head (class probabilities (B, C), mask).

        Padded rows of the features are computed, not zeroed. The head averages logits over non-padded
        patches (plain mean when nothing is padded) and applies a sigmoid (official name: lprobs).
        """
        x, padding_mask = self.encode_source(source, padding_mask, fbank_mean, fbank_std)  # (B, P, D)
        if self.predictor is None:
            return x, padding_mask
        logits = self.predictor(self.predictor_dropout(x))                             # (B, P, C)
        if padding_mask is not None and padding_mask.any():
            logits = logits.masked_fill(padding_mask.unsqueeze(-1), 0.0).sum(dim=1)    # (B, C)
            logits = logits / (~padding_mask).sum(dim=1, keepdim=True)
        else:
            logits = logits.mean(dim=1)                                                # (B, C)
        return torch.sigmoid(logits), padding_mask


def load_checkpoint(path_or_uri: str, map_location: str | torch.device = "cpu") -> BEATs:
    """BEATs from an official {'cfg', 'model'} checkpoint (local path or URI), in eval mode."""
    ck = read_checkpoint(path_or_uri, map_location)
    model = BEATs(BEATsConfig.from_dict(ck["cfg"]))
    return load_weights(model, ck["model"], str(path_or_uri)).to(map_location).eval()


def save_checkpoint(model: BEATs, path_or_uri: str) -> None:
    """Write `model` in the official format, atomically (loadable by the official BEATs code)."""
    save_model(model, path_or_uri)
