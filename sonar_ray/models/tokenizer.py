"""The BEATs acoustic tokenizer: encoder -> quantize_layer -> nearest code of a unit-norm codebook.

Official config fields (TokenizersConfig), parameter/buffer names and checkpoint format. Training the
codebook (k-means init, EMA updates) lives in `sonar_ray.objectives`; this module holds the official
state and the inference path, plus `nearest_codes`: the one nearest-code computation of the project
(the random-projection tokenizer, codebook re-anchoring and tokenizer training call it too).

`LabelTokenizer` is what training asks of a label source; this Tokenizer and
`sonar_ray.objectives.random_projection.RandomProjectionTokenizer` implement it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import torch
import torch.nn as nn
import torch.nn.functional as F

from sonar_ray.models.transformer import (FBANK_MEAN, FBANK_STD, AudioTransformer, EncoderConfig, load_weights,
                                          read_checkpoint, save_model)


@torch.no_grad()
def nearest_codes(z: torch.Tensor, codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """L2-normalised z (..., d), unit codes (K, d) -> (labels (...,) int64, squared distances (..., K)).

    Official arithmetic: |z|^2 + |w|^2 - 2 z.w, argmin (first index on ties); in the codes' dtype even
    under autocast, so labels do not depend on mixed precision.
    """
    with torch.autocast(z.device.type, enabled=False):
        flat = z.reshape(-1, codes.shape[1]).to(codes.dtype)                                   # (N, d)
        d = flat.pow(2).sum(dim=1, keepdim=True) + codes.pow(2).sum(dim=1) - 2 * flat @ codes.T  # (N, K)
    return d.argmin(dim=1).view(z.shape[:-1]), d.view(*z.shape[:-1], codes.shape[0])


def full_precision(fn):
    """Run a label-path method in float32 with autocast off on every device type: under bf16 autocast
    about 2 % of nearest-code labels flip, and the labels are the targets, not an activation to save
    memory on. Floating tensor arguments are cast to float32; the result stays float32."""
    @functools.wraps(fn)
    def wrapper(self, *args, **kwargs):
        args = [a.float() if torch.is_tensor(a) and a.is_floating_point() else a for a in args]
        device = next((a.device.type for a in args if torch.is_tensor(a)), "cpu")
        with torch.autocast(device, enabled=False):
            return fn(self, *args, **kwargs)
    return wrapper


class LabelTokenizer(Protocol):
    """A label source for masked-token prediction: fbank patches -> code indices of a unit codebook.

    Labels are `labels(quantize_input(fbank, mask))` (= `labels_from_fbank`), the nearest code by
    `nearest_codes`. `adaptable`: SONAR may re-anchor and grow the codebook (the official tensors
    `quantize.embedding.*` then exist); a frozen tokenizer's codebook never changes.
    """

    adaptable: ClassVar[bool]

    @property
    def num_codes(self) -> int: ...

    @property
    def codebook(self) -> torch.Tensor: ...  # (K, d) unit codes

    def quantize_input(self, fbank: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor: ...

    def labels(self, quantize_input: torch.Tensor) -> torch.Tensor: ...

    def labels_from_fbank(self, fbank: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor: ...

    def save(self, path_or_uri: str) -> None: ...


@dataclass
class TokenizerConfig(EncoderConfig):
    """Official TokenizersConfig: the encoder fields plus the codebook size."""
    quant_n: int = 1024   # number of codes K
    quant_dim: int = 256  # code dimension

    MODEL_PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"tiny": dict(quant_n=32, quant_dim=16)}


class EmbeddingEMA(nn.Module):
    """Official codebook state: weight (K, d), cluster_size (K,), embed_avg (K, d) as frozen Parameters
    (updated by EMA, not by the optimiser) and the `initted` flag buffer (0 = k-means init pending)."""

    def __init__(self, num_tokens: int, codebook_dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(num_tokens, codebook_dim), requires_grad=False)      # (K, d)
        self.cluster_size = nn.Parameter(torch.zeros(num_tokens), requires_grad=False)              # (K,)
        self.embed_avg = nn.Parameter(torch.zeros(num_tokens, codebook_dim), requires_grad=False)   # (K, d)
        self.register_buffer("initted", torch.zeros(1))  # float, as official (torch.Tensor([False]))


class NormEMAVectorQuantizer(nn.Module):
    """Official quantizer state (EMA constants and updates live in sonar_ray.objectives)."""

    def __init__(self, n_embed: int, embedding_dim: int):
        super().__init__()
        self.embedding = EmbeddingEMA(n_embed, embedding_dim)
        self.register_buffer("cluster_size", torch.zeros(n_embed))  # EMA of code usage           (K,)

    def nearest_codes(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """L2-normalised z (..., d) -> (labels (...,), squared distances (..., K)) to this codebook."""
        return nearest_codes(z, self.embedding.weight)


class Tokenizer(AudioTransformer):
    """BEATs tokenizer (official class name: Tokenizers); a LabelTokenizer."""

    adaptable: ClassVar[bool] = True

    def __init__(self, cfg: TokenizerConfig):
        super().__init__(cfg)
        self.quantize = NormEMAVectorQuantizer(cfg.quant_n, cfg.quant_dim)
        d = cfg.encoder_embed_dim
        self.quantize_layer = nn.Sequential(nn.Linear(d, d), nn.Tanh(), nn.Linear(d, cfg.quant_dim))

    @full_precision
    def quantize_input(self, fbank: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Normalised fbank (B, T, 128), frame mask (B, T) -> quantize_layer output (B, P, quant_dim), pre-L2-norm,
        float32 even under autocast (`full_precision`).

        The encoder's attention mask is the official one (`patch_padding_mask`), so labels match the
        official tokenizer's (test_parity); losses decide which patches count with the data contract."""
        x = self.embed(fbank)                                                          # (B, P, D)
        if padding_mask is not None:
            padding_mask = self.patch_padding_mask(padding_mask, x.shape[1])          # (B, P)
        x, _ = self.encode(x, padding_mask)
        return self.quantize_layer(x)                                                  # (B, P, quant_dim)

    @property
    def num_codes(self) -> int:
        return self.quantize.embedding.weight.shape[0]

    @property
    def codebook(self) -> torch.Tensor:
        return self.quantize.embedding.weight                                          # (K, quant_dim)

    def labels(self, quantize_input: torch.Tensor) -> torch.Tensor:
        """quantize_layer output (B, P, quant_dim) -> code indices (B, P) int64."""
        if not self.quantize.embedding.initted.item():
            raise RuntimeError("tokenizer codebook is not initialised (quantize.embedding.initted == 0): "
                               "load a trained tokenizer, or initialise the codebook (sonar_ray.objectives)")
        labels, _ = self.quantize.nearest_codes(F.normalize(quantize_input, p=2, dim=-1))
        return labels                                                                  # (B, P)

    def labels_from_fbank(self, fbank: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Normalised fbank (B, T, 128), frame mask (B, T) -> code indices (B, P) int64 (padded patches too)."""
        return self.labels(self.quantize_input(fbank, padding_mask))

    def extract_labels(self, source: torch.Tensor, padding_mask: torch.Tensor | None = None,
                       fbank_mean: float = FBANK_MEAN, fbank_std: float = FBANK_STD) -> torch.Tensor:
        """Official: waveforms (B, N), sample mask (B, N) -> code indices (B * P,) int64, flattened."""
        x, _ = self.encode_source(source, padding_mask, fbank_mean, fbank_std)         # (B, P, D)
        return self.labels(self.quantize_layer(x)).reshape(-1)                         # (B * P,)

    def save(self, path_or_uri: str) -> None:
        save_checkpoint(self, path_or_uri)


def load_checkpoint(path_or_uri: str, map_location: str | torch.device = "cpu") -> Tokenizer:
    """Tokenizer from an official {'cfg', 'model'} checkpoint (local path or URI), in eval mode."""
    ck = read_checkpoint(path_or_uri, map_location)
    model = Tokenizer(TokenizerConfig.from_dict(ck["cfg"]))
    return load_weights(model, ck["model"], str(path_or_uri)).to(map_location).eval()


def save_checkpoint(model: Tokenizer, path_or_uri: str) -> None:
    """Write `model` in the official format, atomically (loadable by the official Tokenizers code)."""
    save_model(model, path_or_uri)
