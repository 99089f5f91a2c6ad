"""The BEATs encoder, shared by the BEATs model and its acoustic tokenizer.

Official parameter names throughout (an official state_dict loads with strict=True). Post-LN
transformer with DeepNorm residual scaling, a convolutional positional embedding and T5-style
bucketed relative-position bias with a per-query gate (gated relative position, "GRU rel pos").
Tensors are batch-first here (the official code runs T x B x C); the arithmetic is the same.
Reading order: config -> small helpers -> attention -> layer -> encoder -> patch front end -> checkpoints.
"""

from __future__ import annotations

import dataclasses
import io
import math
import warnings
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from sonar_ray import config as config_lib
from sonar_ray import storage
from sonar_ray.audio.features import FBANK_MEAN, FBANK_STD, normalize_fbank, raw_fbank

C = TypeVar("C", bound="EncoderConfig")


@dataclass
class EncoderConfig:
    """Encoder fields shared by the official BEATsConfig and TokenizersConfig (official names and defaults)."""
    input_patch_size: int = -1              # patch side (frames = mel bins); default -1 cannot build, presets: 16
    embed_dim: int = 512                    # patch-embedding channels; post_extract_proj iff != encoder_embed_dim
    conv_bias: bool = False                 # bias in the patch-embedding Conv2d
    encoder_layers: int = 12
    encoder_embed_dim: int = 768            # D
    encoder_ffn_embed_dim: int = 3072
    encoder_attention_heads: int = 12
    activation_fn: str = "gelu"             # FFN activation: gelu | gelu_accurate | relu | tanh | linear
    layer_norm_first: bool = False          # pre-LN if True; BEATs is post-LN
    deep_norm: bool = False                 # DeepNorm: residual * (2L)^(1/4) in post-LN, scaled xavier init
    dropout: float = 0.1
    attention_dropout: float = 0.1
    activation_dropout: float = 0.0
    encoder_layerdrop: float = 0.0          # probability of skipping a layer in training
    dropout_input: float = 0.0              # dropout on the patch embeddings
    conv_pos: int = 128                     # kernel of the convolutional positional embedding (in patches)
    conv_pos_groups: int = 16
    relative_position_embedding: bool = False
    num_buckets: int = 320                  # T5 relative-position buckets (half per direction)
    max_distance: int = 1280                # distance (in patch indices) mapped to the last bucket
    gru_rel_pos: bool = False               # gate the relative bias per query and head

    # Architecture presets, shared by BEATs and its tokenizer; subclasses add their own fields.
    ENCODER_PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        # Official full-size BEATs (90.3M): class defaults + the published backbone choices. max_distance 800
        # follows the released checkpoints (issue 3); the fixture manifests keep 1280 (no shape changes).
        "base": dict(input_patch_size=16, relative_position_embedding=True, gru_rel_pos=True, deep_norm=True,
                     max_distance=800),
        # Small-scale continual pre-training (2.1M): 4 x 192, 4 heads. embed_dim = D because a 16x16
        # patch has only 256 values: no 512-channel detour and no post_extract_proj. No dropout.
        "small": dict(input_patch_size=16, embed_dim=192, encoder_layers=4, encoder_embed_dim=192,
                      encoder_ffn_embed_dim=768, encoder_attention_heads=4, relative_position_embedding=True,
                      gru_rel_pos=True, deep_norm=True, max_distance=800, dropout=0.0, attention_dropout=0.0),
        # Exactly the architecture of the reference fixtures (tests, demos).
        "tiny": dict(input_patch_size=16, embed_dim=32, encoder_layers=2, encoder_embed_dim=64,
                     encoder_ffn_embed_dim=128, encoder_attention_heads=4, conv_pos=16, conv_pos_groups=4,
                     relative_position_embedding=True, num_buckets=32, max_distance=64, gru_rel_pos=True,
                     deep_norm=True),
    }
    MODEL_PRESETS: ClassVar[dict[str, dict[str, Any]]] = {}  # per-model additions (subclasses)

    @classmethod
    def preset(cls: type[C], name: str, **overrides: Any) -> C:
        if name not in cls.ENCODER_PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose from {sorted(cls.ENCODER_PRESETS)}")
        return cls.from_dict({**cls.ENCODER_PRESETS[name], **cls.MODEL_PRESETS.get(name, {}), **overrides},
                             strict=True)

    @classmethod
    def from_dict(cls: type[C], cfg: dict[str, Any], strict: bool = False) -> C:
        """From an official cfg dict. Unknown keys warn and are ignored (official configs carry extras),
        or raise with strict=True; wrong types raise."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(cfg) - names)
        if unknown:
            if strict:
                raise ValueError(f"unknown {cls.__name__} keys: {unknown}")
            warnings.warn(f"{cls.__name__}: ignoring unknown config keys {unknown}", stacklevel=2)
        return config_lib.from_dict(cls, {k: v for k, v in cfg.items() if k in names})

    def to_dict(self) -> dict[str, Any]:
        """Complete dict of plain scalars, as official `cfg.__dict__` (accepted by the official config classes)."""
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------------- helpers

class GradMultiply(torch.autograd.Function):
    """Identity forward, gradient times `scale` backward (layer-wise gradient decay)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad * ctx.scale, None


def activation(name: str):
    """FFN activations; GELU in float32 as the official code does (bf16-autocast safe)."""
    if name == "gelu":
        return lambda x: F.gelu(x.float()).type_as(x)
    if name == "gelu_accurate":
        return lambda x: F.gelu(x.float(), approximate="tanh").type_as(x)
    if name in ("relu", "tanh"):
        return getattr(torch, name)
    if name == "linear":
        return lambda x: x
    raise ValueError(f"unsupported activation_fn {name!r} (gelu, gelu_accurate, relu, tanh, linear)")


class WeightNormConv1d(nn.Module):
    """Conv1d with old-style weight norm over dim 2: weight = g * v / ||v||, norm over dims (0, 1).

    Keeps the official state-dict keys `weight_g` (1, 1, K) / `weight_v` (C_out, C_in/groups, K) but
    computes the weight in forward, so the module has no derived tensor attribute and deep-copies
    (torch.nn.utils.weight_norm's hook-held weight breaks copy.deepcopy).
    """

    def __init__(self, channels: int, kernel_size: int, groups: int):
        super().__init__()
        self.padding, self.groups = kernel_size // 2, groups
        self.cpu_channels_last = True  # False: the official conv1d call (bit-identical to the official code)
        # Official init: normal(0, sqrt(4 / (K * D))), zero bias, then g = ||v||.
        v = torch.randn(channels, channels // groups, kernel_size) * math.sqrt(4.0 / (kernel_size * channels))
        self.weight_g = nn.Parameter(torch.linalg.vector_norm(v, dim=(0, 1), keepdim=True))  # (1, 1, K)
        self.weight_v = nn.Parameter(v)                                                      # (D, D/g, K)
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The kernel both torch weight-norm APIs use: g * v / ||v|| with the official rounding.
        weight = torch._weight_norm(self.weight_v, self.weight_g, 2)                        # (D, D/g, K)
        if x.device.type != "cpu" or not self.cpu_channels_last:
            return F.conv1d(x, weight, self.bias, padding=self.padding, groups=self.groups)  # (B, D, P + 1 - K%2)
        # On CPU, oneDNN runs this wide grouped kernel about 2x faster fwd+bwd as a channels-last 1 x K conv2d.
        cl = torch.channels_last
        y = F.conv2d(x.unsqueeze(2).contiguous(memory_format=cl), weight.unsqueeze(2).contiguous(memory_format=cl),
                     self.bias, padding=(0, self.padding), groups=self.groups)              # (B, D, 1, P + 1 - K%2)
        return y.squeeze(2)


class SamePad(nn.Module):
    """Drop the extra last frame an even kernel with padding K//2 produces."""

    def __init__(self, kernel_size: int):
        super().__init__()
        self.remove = 1 if kernel_size % 2 == 0 else 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, :-self.remove] if self.remove else x


def relative_position_bucket(relative: torch.Tensor, num_buckets: int, max_distance: int) -> torch.Tensor:
    """Bidirectional T5 buckets: half the buckets per sign; exact below num_buckets/4, log-spaced up to max_distance."""
    num_buckets //= 2
    buckets = (relative > 0).long() * num_buckets
    relative = relative.abs()
    max_exact = num_buckets // 2
    is_small = relative < max_exact
    large = max_exact + (torch.log(relative.float() / max_exact) / math.log(max_distance / max_exact)
                         * (num_buckets - max_exact)).long()
    large = large.clamp_max(num_buckets - 1)
    return buckets + torch.where(is_small, relative, large)


# ----------------------------------------------------------------------------- attention

class MultiheadAttention(nn.Module):
    """Self-attention with the official BEATs numerics: q scaled by head_dim^-0.5 / 32, logits
    (q k^T - rowmax) * 32 (an fp16 guard, softmax-invariant), key padding, + (gated) relative bias.

    `use_sdpa=True` (default) runs torch's scaled_dot_product_attention with bias and key padding as
    one additive float mask; False runs the explicit official sequence of operations.
    """

    ALPHA = 32.0

    def __init__(self, cfg: EncoderConfig, has_relative_attention_bias: bool):
        super().__init__()
        d, h = cfg.encoder_embed_dim, cfg.encoder_attention_heads
        if d % h:
            raise ValueError(f"encoder_embed_dim {d} is not divisible by encoder_attention_heads {h}")
        self.num_heads, self.head_dim = h, d // h
        self.scaling = self.head_dim ** -0.5
        self.dropout = cfg.attention_dropout
        self.num_buckets, self.max_distance = cfg.num_buckets, cfg.max_distance
        self.gru_rel_pos = cfg.gru_rel_pos
        self.use_sdpa = True
        if cfg.gru_rel_pos:
            self.grep_a = nn.Parameter(torch.ones(1, h, 1, 1))
        if has_relative_attention_bias:  # layer 0 owns it; the encoder shares it with the other layers
            self.relative_attention_bias = nn.Embedding(cfg.num_buckets, h)
        self.k_proj = nn.Linear(d, d)
        self.v_proj = nn.Linear(d, d)
        self.q_proj = nn.Linear(d, d)
        self.out_proj = nn.Linear(d, d)
        if cfg.gru_rel_pos:
            self.grep_linear = nn.Linear(self.head_dim, 8)

    def position_bias(self, positions: torch.Tensor) -> torch.Tensor:
        """Ungated relative-position bias (N, H, L, L) for patch indices `positions` (N, L)."""
        relative = positions[:, None, :] - positions[:, :, None]                      # (N, L, L) key - query
        buckets = relative_position_bucket(relative, self.num_buckets, self.max_distance)
        return self.relative_attention_bias(buckets).permute(0, 3, 1, 2)              # (N, H, L, L)

    def forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None,
                position_bias: torch.Tensor | None = None) -> torch.Tensor:
        B, L, D = x.shape
        H, hd = self.num_heads, self.head_dim
        q = self.q_proj(x) * self.scaling * (1.0 / self.ALPHA)                        # (B, L, D)
        q = q.view(B, L, H, hd).transpose(1, 2)                                        # (B, H, L, hd)
        k = self.k_proj(x).view(B, L, H, hd).transpose(1, 2)                           # (B, H, L, hd)
        v = self.v_proj(x).view(B, L, H, hd).transpose(1, 2)                           # (B, H, L, hd)

        bias = position_bias                                                           # (1 or B, H, L, L)
        if bias is not None and self.gru_rel_pos:
            # Gate from the unscaled query, recovered exactly as the official code does.
            query = q * self.ALPHA / self.scaling                                      # (B, H, L, hd)
            gate_a, gate_b = torch.sigmoid(self.grep_linear(query).view(B, H, L, 2, 4).sum(-1)).chunk(2, dim=-1)
            gate = gate_a * (gate_b * self.grep_a - 1.0) + 2.0                         # (B, H, L, 1)
            bias = gate * bias                                                         # (B, H, L, L)
        p_drop = self.dropout if self.training else 0.0

        if self.use_sdpa:
            mask = bias
            if key_padding_mask is not None:
                pad = torch.zeros(B, 1, 1, L, device=x.device, dtype=torch.float32)
                pad = pad.masked_fill(key_padding_mask[:, None, None, :], float("-inf"))  # (B, 1, 1, L)
                mask = pad if mask is None else mask + pad                             # (B, H, L, L)
            if mask is not None:
                mask = mask.to(q.dtype)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p_drop,
                                                 scale=self.ALPHA)                     # (B, H, L, hd)
        else:
            w = q @ k.transpose(-1, -2)                                                # (B, H, L, L)
            w = (w - w.amax(dim=-1, keepdim=True)) * self.ALPHA
            if key_padding_mask is not None:
                w = w.masked_fill(key_padding_mask[:, None, None, :], float("-inf"))
            if bias is not None:
                w = w + bias
            probs = F.softmax(w.float(), dim=-1).type_as(w)                            # (B, H, L, L)
            probs = F.dropout(probs, p=p_drop)
            out = probs.to(v.dtype) @ v                                                # (B, H, L, hd)
        out = out.transpose(1, 2).reshape(B, L, D)                                     # (B, L, D)
        return self.out_proj(out)


# ----------------------------------------------------------------------------- layer

class EncoderLayer(nn.Module):
    """Official TransformerSentenceEncoderLayer: post-LN (optionally DeepNorm-scaled) or pre-LN."""

    def __init__(self, cfg: EncoderConfig, has_relative_attention_bias: bool):
        super().__init__()
        d = cfg.encoder_embed_dim
        self.layer_norm_first = cfg.layer_norm_first
        self.deep_norm_alpha = (2 * cfg.encoder_layers) ** 0.25 if cfg.deep_norm else 1.0
        self.activation_fn = activation(cfg.activation_fn)
        self.self_attn = MultiheadAttention(cfg, has_relative_attention_bias)
        self.dropout1 = nn.Dropout(cfg.dropout)
        self.dropout2 = nn.Dropout(cfg.activation_dropout)
        self.dropout3 = nn.Dropout(cfg.dropout)
        self.self_attn_layer_norm = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, cfg.encoder_ffn_embed_dim)
        self.fc2 = nn.Linear(cfg.encoder_ffn_embed_dim, d)
        self.final_layer_norm = nn.LayerNorm(d)

    def ffn(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout3(self.fc2(self.dropout2(self.activation_fn(self.fc1(x)))))  # (B, L, D)

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None,
                position_bias: torch.Tensor | None) -> torch.Tensor:
        if self.layer_norm_first:
            x = x + self.dropout1(self.self_attn(self.self_attn_layer_norm(x), padding_mask, position_bias))
            return x + self.ffn(self.final_layer_norm(x))                              # (B, L, D)
        a = self.deep_norm_alpha
        x = self.self_attn_layer_norm(x * a + self.dropout1(self.self_attn(x, padding_mask, position_bias)))
        return self.final_layer_norm(x * a + self.ffn(x))                              # (B, L, D)


# ----------------------------------------------------------------------------- encoder

class TransformerEncoder(nn.Module):
    """Conv positional embedding -> LayerNorm (post-LN) -> layers; official `encoder.*` names."""

    def __init__(self, cfg: EncoderConfig, layer_wise_gradient_decay_ratio: float = 1.0):
        super().__init__()
        d = cfg.encoder_embed_dim
        if d % cfg.conv_pos_groups:
            raise ValueError(f"encoder_embed_dim {d} is not divisible by conv_pos_groups {cfg.conv_pos_groups}")
        self.dropout = cfg.dropout
        self.layerdrop = cfg.encoder_layerdrop
        self.layer_norm_first = cfg.layer_norm_first
        self.layer_wise_gradient_decay_ratio = layer_wise_gradient_decay_ratio
        self.pos_conv = nn.Sequential(WeightNormConv1d(d, cfg.conv_pos, cfg.conv_pos_groups),
                                      SamePad(cfg.conv_pos), nn.GELU())
        self.relative_position_embedding = cfg.relative_position_embedding
        self.layers = nn.ModuleList(
            [EncoderLayer(cfg, cfg.relative_position_embedding and i == 0) for i in range(cfg.encoder_layers)])
        if cfg.relative_position_embedding:  # one table, registered in every layer (official state-dict keys)
            for layer in self.layers[1:]:
                layer.self_attn.relative_attention_bias = self.layers[0].self_attn.relative_attention_bias
        self.layer_norm = nn.LayerNorm(d)
        self._init_weights(cfg)

    def _init_weights(self, cfg: EncoderConfig) -> None:
        # Official: BERT init (normal 0.02, zero bias) for every Linear / Embedding, then DeepNorm xavier.
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, mean=0.0, std=0.02)
            if isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)
        if cfg.deep_norm:
            beta = (8 * cfg.encoder_layers) ** -0.25
            for layer in self.layers:
                a = layer.self_attn
                for w, gain in [(a.k_proj, 1.0), (a.v_proj, beta), (a.q_proj, 1.0), (a.out_proj, beta),
                                (layer.fc1, beta), (layer.fc2, beta)]:
                    nn.init.xavier_normal_(w.weight, gain=gain)

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None = None,
                positions: torch.Tensor | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """x (B, L, D); padding_mask (B, L) True = padded; positions (B, L) original patch indices."""
        if padding_mask is not None:
            x = x.masked_fill(padding_mask.unsqueeze(-1), 0.0)                         # (B, L, D)
        x = x + self.pos_conv(x.transpose(1, 2)).transpose(1, 2)                       # (B, L, D)
        if not self.layer_norm_first:
            x = self.layer_norm(x)
        x = F.dropout(x, p=self.dropout, training=self.training)

        bias = None
        if self.relative_position_embedding:
            if positions is None:
                positions = torch.arange(x.shape[1], device=x.device).unsqueeze(0)     # (1, L)
            bias = self.layers[0].self_attn.position_bias(positions)                   # (1 or B, H, L, L)
        layer_results = []
        for layer in self.layers:
            if self.layer_wise_gradient_decay_ratio != 1.0:
                x = GradMultiply.apply(x, self.layer_wise_gradient_decay_ratio)
            if not (self.training and self.layerdrop > 0 and torch.rand(()).item() < self.layerdrop):
                x = layer(x, padding_mask, bias)                                       # (B, L, D)
            layer_results.append(x)
        if self.layer_norm_first:
            x = self.layer_norm(x)
        return x, layer_results


# ----------------------------------------------------------------------------- patch front end

def reduce_padding_mask(padding_mask: torch.Tensor, length: int) -> torch.Tensor:
    """Official forward_padding_mask: drop the last `n % length` entries, group the rest into `length`
    consecutive runs, a run is padded iff all of it is. (B, n) -> (B, length)."""
    extra = padding_mask.shape[1] % length
    if extra > 0:
        padding_mask = padding_mask[:, :-extra]
    return padding_mask.reshape(padding_mask.shape[0], length, -1).all(-1)


class AudioTransformer(nn.Module):
    """fbank -> 16x16 patches -> transformer encoder. Base of BEATs and Tokenizer (official names)."""

    def __init__(self, cfg: EncoderConfig, layer_wise_gradient_decay_ratio: float = 1.0):
        super().__init__()
        if cfg.input_patch_size <= 0:
            raise ValueError(f"input_patch_size must be > 0 (the official default -1 cannot build), "
                             f"got {cfg.input_patch_size}")
        self.cfg = cfg
        self.post_extract_proj = (nn.Linear(cfg.embed_dim, cfg.encoder_embed_dim)
                                  if cfg.embed_dim != cfg.encoder_embed_dim else None)
        p = cfg.input_patch_size
        self.patch_embedding = nn.Conv2d(1, cfg.embed_dim, kernel_size=p, stride=p, bias=cfg.conv_bias)
        self.dropout_input = nn.Dropout(cfg.dropout_input)
        self.encoder = TransformerEncoder(cfg, layer_wise_gradient_decay_ratio)
        self.layer_norm = nn.LayerNorm(cfg.embed_dim)

    @property
    def use_sdpa(self) -> bool:
        return self.encoder.layers[0].self_attn.use_sdpa

    @use_sdpa.setter
    def use_sdpa(self, value: bool) -> None:
        """False: the official sequence of operations (explicit attention, the positional conv as conv1d),
        bit-identical to the official code on one machine; True: the faster kernels (same math)."""
        for layer in self.encoder.layers:
            layer.self_attn.use_sdpa = value
        self.encoder.pos_conv[0].cpu_channels_last = value

    def preprocess(self, source: torch.Tensor, fbank_mean: float = FBANK_MEAN,
                   fbank_std: float = FBANK_STD) -> torch.Tensor:
        """Waveforms (B, N) in [-1, 1] at 16 kHz -> normalised fbank (B, T, 128)."""
        return normalize_fbank(raw_fbank(source), fbank_mean, fbank_std)              # (B, T, 128)

    def forward_padding_mask(self, features: torch.Tensor, padding_mask: torch.Tensor) -> torch.Tensor:
        """Official: reduce `padding_mask` (B, n) to features.shape[1] entries."""
        return reduce_padding_mask(padding_mask, features.shape[1])

    def patch_padding_mask(self, frame_padding_mask: torch.Tensor, num_patches: int) -> torch.Tensor:
        """Frame mask (B, T) -> patch mask (B, P) exactly as the official model derives it (consecutive
        frames grouped per patch index, although patches are time-block-major: an official quirk). Only
        the official paths use it; which patches are real is `sonar_ray.audio.features.patch_padding_mask`."""
        return reduce_padding_mask(frame_padding_mask, num_patches)

    def embed(self, fbank: torch.Tensor) -> torch.Tensor:
        """Normalised fbank (B, T, 128) -> patch embeddings (B, P, D), P = (T // 16) * 8, time-block-major."""
        x = self.patch_embedding(fbank.unsqueeze(1))                                   # (B, E, T/16, 8)
        x = x.flatten(2).transpose(1, 2)                                               # (B, P, E)
        x = self.layer_norm(x)
        if self.post_extract_proj is not None:
            x = self.post_extract_proj(x)                                              # (B, P, D)
        return self.dropout_input(x)

    def encode(self, x: torch.Tensor, padding_mask: torch.Tensor | None = None,
               positions: torch.Tensor | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Patch embeddings (B, P', D) -> (encoder output (B, P', D), every layer's output).

        `positions` (B, P'): original patch indices when encoding a subset (visible-only, MAE-style);
        the relative-position bias uses them. `padding_mask` (B, P'), True = padded: those rows are
        zeroed on input and excluded as attention keys.
        """
        return self.encoder(x, padding_mask, positions)

    def encode_source(self, source: torch.Tensor, padding_mask: torch.Tensor | None = None,
                      fbank_mean: float = FBANK_MEAN, fbank_std: float = FBANK_STD
                      ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Waveforms (B, N) and sample mask (B, N) -> encoder output (B, P, D) and the official patch mask."""
        fbank = self.preprocess(source, fbank_mean, fbank_std)                         # (B, T, 128)
        if padding_mask is not None:
            padding_mask = self.forward_padding_mask(fbank, padding_mask)              # (B, T)
        x = self.embed(fbank)                                                          # (B, P, D)
        if padding_mask is not None:
            padding_mask = self.forward_padding_mask(x, padding_mask)                  # (B, P)
        x, _ = self.encode(x, padding_mask)
        return x, padding_mask


# ----------------------------------------------------------------------------- checkpoints

M = TypeVar("M", bound=AudioTransformer)


def read_checkpoint(path_or_uri: str, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Official {'cfg': dict, 'model': state_dict} from a local path or URI, loaded with weights_only=True."""
    raw = storage.read_bytes(str(path_or_uri))
    try:
        ck = torch.load(io.BytesIO(raw), map_location=map_location, weights_only=True)
    except Exception as e:  # truncated / corrupt / not a torch file / unsafe pickle
        raise ValueError(f"{path_or_uri}: not a readable checkpoint (truncated or corrupt file?): "
                         f"{type(e).__name__}: {e}") from e
    if not isinstance(ck, dict) or not isinstance(ck.get("cfg"), dict) or not isinstance(ck.get("model"), dict):
        found = sorted(ck) if isinstance(ck, dict) else type(ck).__name__
        raise ValueError(f"{path_or_uri}: expected a dict with 'cfg' (dict) and 'model' (state_dict), found {found}")
    return ck


def _names(keys: list[str], limit: int = 8) -> str:
    return ", ".join(keys[:limit]) + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


def load_weights(model: M, state_dict: dict[str, torch.Tensor], source: str = "checkpoint") -> M:
    """Strict load with an error naming every missing, unexpected and mis-shaped key."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    shapes = [f"{k} {tuple(v.shape)} (model {tuple(expected[k].shape)})" for k, v in state_dict.items()
              if k in expected and (not torch.is_tensor(v) or v.shape != expected[k].shape)]
    problems = [f"{what}: {_names(keys)}" for what, keys in
                [("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", shapes)] if keys]
    rel = sorted(k for k in state_dict if k.endswith("self_attn.relative_attention_bias.weight"))
    if rel and not problems and not all(torch.equal(state_dict[k], state_dict[rel[0]]) for k in rel):
        problems.append("the per-layer copies of the shared relative_attention_bias differ")
    if problems:
        raise ValueError(f"{source} does not fit the {type(model).__name__} its cfg describes: " + "; ".join(problems))
    model.load_state_dict(state_dict, strict=True)
    return model


def save_model(model: AudioTransformer, path_or_uri: str) -> None:
    """Atomically write the official {'cfg': full dict, 'model': state_dict of plain CPU tensors}."""
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    buf = io.BytesIO()
    torch.save({"cfg": model.cfg.to_dict(), "model": state}, buf)
    storage.write_bytes_atomic(str(path_or_uri), buf.getvalue())
