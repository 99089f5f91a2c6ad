"""BEATs / tokenizer parity with the official reference fixtures, full-size manifests, attention paths."""

import json
import subprocess
import sys

import pytest
import torch

from sonar_ray.models import beats, tokenizer
from sonar_ray.models.beats import BEATs, BEATsConfig
from sonar_ray.models.tokenizer import Tokenizer, TokenizerConfig
from tolerances import FEATURES, FEATURES_SDPA, LPROBS, PREPROCESS, QUANTIZE

NAMES = ["batch", "single", "single_falsemask"]


@pytest.fixture(scope="module")
def fx(fixtures_dir):
    return {
        "inputs": torch.load(fixtures_dir / "inputs.pt", weights_only=True),
        "expected": torch.load(fixtures_dir / "expected.pt", weights_only=True),
        "beats": beats.load_checkpoint(fixtures_dir / "beats_tiny.pt"),
        "finetuned": beats.load_checkpoint(fixtures_dir / "beats_tiny_finetuned.pt"),
        "tokenizer": tokenizer.load_checkpoint(fixtures_dir / "tokenizer_tiny.pt"),
    }


def maxdiff(a, b):
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a.double() - b.double()).abs().max().item()


def assert_mask(got, exp):
    if exp is None:
        assert got is None
    else:
        assert got is not None and got.dtype == torch.bool and torch.equal(got, exp)


# ----------------------------------------------------------------------------- fixtures

@pytest.mark.parametrize("use_sdpa", [True, False])
@pytest.mark.parametrize("name", NAMES)
def test_beats_features(fx, name, use_sdpa):
    model, item, exp = fx["beats"], fx["inputs"][name], fx["expected"]
    model.use_sdpa = use_sdpa
    src, pm = item["source"], item["padding_mask"]
    with torch.no_grad():
        fbank = model.preprocess(src)
        assert maxdiff(fbank, exp["preprocess"][name]) <= PREPROCESS
        inter = exp["beats"][name]["intermediates"]
        x = model.patch_embedding(fbank.unsqueeze(1)).flatten(2).transpose(1, 2)
        assert maxdiff(model.layer_norm(x), inter["patch_layer_norm_out"]) <= FEATURES
        emb = model.embed(fbank)
        assert maxdiff(emb, inter["post_extract_proj_out"]) <= FEATURES
        if pm is not None:
            frame_mask = model.forward_padding_mask(fbank, pm)
            assert_mask(frame_mask, exp["frame_padding_mask"][name])
            assert_mask(model.patch_padding_mask(frame_mask, emb.shape[1]), exp["patch_padding_mask"][name])
        feats, mask = model.extract_features(src, padding_mask=pm)
    # The explicit path reproduces the official operation order (bit-identical on the fixture machine).
    assert maxdiff(feats, exp["beats"][name]["features"]) <= (FEATURES_SDPA if use_sdpa else FEATURES)
    assert maxdiff(feats, inter["encoder_out"]) <= FEATURES_SDPA
    assert_mask(mask, exp["beats"][name]["padding_mask"])


def test_feature_tolerance_catches_a_perturbed_bias(fixtures_dir, fx):
    """The fixtures' negative control: a 1e-3 change to one layer-0 bias must fail the feature tolerance."""
    model = beats.load_checkpoint(fixtures_dir / "beats_tiny.pt")
    with torch.no_grad():
        model.encoder.layers[0].fc2.bias[0] += 1e-3  # moves features by ~7e-4
        item = fx["inputs"]["batch"]
        feats, _ = model.extract_features(item["source"], padding_mask=item["padding_mask"])
    assert maxdiff(feats, fx["expected"]["beats"]["batch"]["features"]) > 10 * FEATURES


@pytest.mark.parametrize("name", NAMES)
def test_finetuned_lprobs(fx, name):
    model, item, exp = fx["finetuned"], fx["inputs"][name], fx["expected"]["beats_finetuned"][name]
    with torch.no_grad():
        lprobs, mask = model.extract_features(item["source"], padding_mask=item["padding_mask"])
        x, _ = model.encode_source(item["source"], item["padding_mask"])
        logits = model.predictor(x)
    assert maxdiff(lprobs, exp["lprobs"]) <= LPROBS
    assert maxdiff(x, exp["intermediates"]["encoder_out"]) <= FEATURES_SDPA
    assert maxdiff(logits, exp["intermediates"]["predictor_logits_per_patch"]) <= FEATURES_SDPA
    assert_mask(mask, exp["padding_mask"])


@pytest.mark.parametrize("name", NAMES)
def test_tokenizer_labels(fx, name):
    tok, item, exp = fx["tokenizer"], fx["inputs"][name], fx["expected"]["tokenizer"][name]
    src, pm = item["source"], item["padding_mask"]
    with torch.no_grad():
        labels = tok.extract_labels(src, padding_mask=pm)
        fbank = tok.preprocess(src)
        frame_mask = None if pm is None else tok.forward_padding_mask(fbank, pm)
        q = tok.quantize_input(fbank, frame_mask)
        by_fbank = tok.labels_from_fbank(fbank, frame_mask)
        _, dist = tok.quantize.nearest_codes(torch.nn.functional.normalize(q, dim=-1))
    assert labels.dtype == torch.int64 and labels.shape == exp["labels"].shape
    assert torch.equal(labels, exp["labels"])
    assert torch.equal(by_fbank, exp["labels"].view(by_fbank.shape))
    assert maxdiff(q, exp["intermediates"]["quantize_input"]) <= QUANTIZE
    top2 = dist.flatten(0, 1).topk(2, dim=-1, largest=False).values
    assert maxdiff(top2[:, 1] - top2[:, 0], exp["label_margin"]) <= QUANTIZE


def test_presets_match_fixture_and_official_defaults(fixtures_dir):
    ck = torch.load(fixtures_dir / "beats_tiny.pt", weights_only=True)
    assert BEATsConfig.preset("tiny").to_dict() == ck["cfg"]
    tk = torch.load(fixtures_dir / "tokenizer_tiny.pt", weights_only=True)
    assert TokenizerConfig.preset("tiny").to_dict() == tk["cfg"]
    official = dict(input_patch_size=-1, embed_dim=512, conv_bias=False, encoder_layers=12, encoder_embed_dim=768,
                    encoder_ffn_embed_dim=3072, encoder_attention_heads=12, activation_fn="gelu",
                    layer_wise_gradient_decay_ratio=1.0, layer_norm_first=False, deep_norm=False, dropout=0.1,
                    attention_dropout=0.1, activation_dropout=0.0, encoder_layerdrop=0.0, dropout_input=0.0,
                    conv_pos=128, conv_pos_groups=16, relative_position_embedding=False, num_buckets=320,
                    max_distance=1280, gru_rel_pos=False, finetuned_model=False, predictor_dropout=0.1,
                    predictor_class=527)
    assert BEATsConfig().to_dict() == official
    assert BEATsConfig.preset("base", finetuned_model=True).finetuned_model
    with pytest.raises(ValueError, match="preset"):
        BEATsConfig.preset("huge")
    with pytest.raises(ValueError, match="unknown"):
        BEATsConfig.preset("base", quant_n=3)
    with pytest.warns(UserWarning, match="quant_n"):
        assert BEATsConfig.from_dict(tk["cfg"]).encoder_layers == 2
    with pytest.raises(ValueError, match="input_patch_size"):
        BEATs(BEATsConfig())


# ----------------------------------------------------------------------------- full-size manifests

def manifest_of(model):
    sd = model.state_dict()
    params = list(model.parameters())
    return {
        "keys": {k: (list(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in sd.items()},
        "num_state_dict_entries": len(sd),
        "total_state_dict_numel": sum(v.numel() for v in sd.values()),
        "total_unique_parameters": sum(p.numel() for p in params),
        "total_unique_trainable_parameters": sum(p.numel() for p in params if p.requires_grad),
    }


@pytest.mark.parametrize("file,entry,build", [
    ("manifest_full_beats.json", "pretrained", lambda: BEATs(BEATsConfig.preset("base"))),
    ("manifest_full_beats.json", "finetuned", lambda: BEATs(BEATsConfig.preset("base", finetuned_model=True))),
    ("manifest_full_tokenizer.json", "tokenizer", lambda: Tokenizer(TokenizerConfig.preset("base"))),
])
def test_full_size_matches_manifest(fixtures_dir, file, entry, build):
    ref = json.loads((fixtures_dir / file).read_text())[entry]
    with torch.device("meta"):  # no memory, no init cost
        model = build()
    got = manifest_of(model)
    assert got["keys"] == {r["key"]: (r["shape"], r["dtype"]) for r in ref["state_dict"]}
    for k in ["num_state_dict_entries", "total_state_dict_numel", "total_unique_parameters",
              "total_unique_trainable_parameters"]:
        assert got[k] == ref[k], k
    assert {k for k, _ in model.named_buffers()} == set(ref["buffers"])
    # Same as the manifest cfg except the released-checkpoint choices of the "base" preset.
    assert {k: v for k, v in model.cfg.to_dict().items() if ref["cfg"].get(k) != v} == (
        {"max_distance": 800} | ({"layer_wise_gradient_decay_ratio": 0.6} if entry != "tokenizer" else {}))


# ----------------------------------------------------------------------------- attention paths

ODD = BEATsConfig(input_patch_size=16, embed_dim=48, encoder_layers=3, encoder_embed_dim=96,
                  encoder_ffn_embed_dim=160, encoder_attention_heads=6, activation_fn="relu",
                  layer_norm_first=True, deep_norm=False, conv_pos=7, conv_pos_groups=3, dropout=0.0,
                  attention_dropout=0.0)


def sdpa_vs_fallback(model, fbank, padding_mask=None, positions=None):
    outs = []
    for use_sdpa in (True, False):
        model.use_sdpa = use_sdpa
        assert all(layer.self_attn.use_sdpa is use_sdpa for layer in model.encoder.layers)
        model.zero_grad()
        x = model.embed(fbank)
        if positions is not None:
            x = x.gather(1, positions.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
        y, layers = model.encode(x, padding_mask, positions)
        assert len(layers) == model.cfg.encoder_layers and layers[-1].shape == y.shape
        y.pow(2).mean().backward()
        outs.append((y.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]))
    (y1, g1), (y2, g2) = outs
    assert maxdiff(y1, y2) <= 1e-5
    assert len(g1) == len(g2) and all(torch.allclose(a, b, atol=1e-5, rtol=1e-4) for a, b in zip(g1, g2))
    return y1


@pytest.mark.parametrize("cfg", [BEATsConfig.preset("tiny", dropout=0.0, attention_dropout=0.0), ODD],
                         ids=["tiny", "odd"])
def test_sdpa_equals_fallback_with_padding_and_positions(cfg):
    torch.manual_seed(0)
    model = BEATs(cfg)
    fbank = torch.randn(3, 16 * 6, 128)  # P = 48
    pad = torch.zeros(3, 48, dtype=torch.bool)
    pad[1, 30:] = True
    sdpa_vs_fallback(model, fbank, pad)
    keep = torch.stack([torch.randperm(48)[:12].sort().values for _ in range(3)])  # (B, 12) visible patches
    sdpa_vs_fallback(model, fbank, pad.gather(1, keep), keep)


def test_positions_drive_the_relative_bias():
    torch.manual_seed(0)
    model = BEATs(BEATsConfig.preset("tiny")).eval()
    attn = model.encoder.layers[0].self_attn
    full = attn.position_bias(torch.arange(48)[None])                                  # (1, H, 48, 48)
    keep = torch.tensor([[0, 3, 9, 17, 40], [1, 2, 8, 30, 47]])
    sub = attn.position_bias(keep)                                                     # (2, H, 5, 5)
    for b in range(2):
        assert torch.equal(sub[b], full[0][:, keep[b]][:, :, keep[b]])
    # Rows of a batch are independent, and explicit contiguous positions change nothing.
    with torch.no_grad():
        x = model.embed(torch.randn(2, 64, 128))                                       # (2, 32, D)
        y, _ = model.encode(x[:, :5], positions=keep)
        y0, _ = model.encode(x[:1, :5], positions=keep[:1])
        assert maxdiff(y[:1], y0) <= 1e-6
        plain, _ = model.encode(x)
        explicit, _ = model.encode(x, positions=torch.arange(32).expand(2, -1))
        assert maxdiff(plain, explicit) == 0.0
    # The shared table is one module, registered in every layer.
    assert all(l.self_attn.relative_attention_bias is attn.relative_attention_bias for l in model.encoder.layers)


def test_layer_wise_gradient_decay_scales_gradients_only():
    torch.manual_seed(0)
    decayed = BEATs(BEATsConfig.preset("tiny", dropout=0.0, attention_dropout=0.0))  # ratio 0.6, 2 layers
    plain = BEATs(BEATsConfig.preset("tiny", dropout=0.0, attention_dropout=0.0, layer_wise_gradient_decay_ratio=1.0))
    plain.load_state_dict(decayed.state_dict())
    fbank = torch.randn(2, 32, 128)
    outs = []
    for m in (decayed, plain):
        y, _ = m.encode(m.embed(fbank))
        y.sum().backward()
        outs.append(y.detach())
    assert torch.equal(outs[0], outs[1])
    g = lambda m, name: dict(m.named_parameters())[name].grad  # noqa: E731
    for name, factor in [("patch_embedding.weight", 0.36), ("encoder.layers.0.fc1.weight", 0.6),
                         ("encoder.layers.1.fc1.weight", 1.0)]:
        assert torch.allclose(g(decayed, name), factor * g(plain, name), rtol=1e-4, atol=1e-7), name


@pytest.mark.parametrize("use_sdpa", [True, False])
def test_bf16_autocast(fx, use_sdpa):
    model = fx["beats"]
    model.use_sdpa = use_sdpa
    item = fx["inputs"]["batch"]
    with torch.no_grad():
        ref, _ = model.extract_features(item["source"], item["padding_mask"])
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low, mask = model.extract_features(item["source"], item["padding_mask"])
    assert torch.isfinite(low).all() and mask is not None
    cos = torch.nn.functional.cosine_similarity(low.float(), ref, dim=-1)
    assert cos.min() > 0.98, cos.min()


# ----------------------------------------------------------------------------- the fixture checker

def test_check_parity_script(fixtures_dir):
    proc = subprocess.run(
        [sys.executable, str(fixtures_dir / "check_parity.py"), "--fixtures", str(fixtures_dir),
         "--loader", "sonar_ray.models.beats:load_checkpoint",
         "--tokenizer-loader", "sonar_ray.models.tokenizer:load_checkpoint"],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "summary: 18 passed, 0 failed" in proc.stdout


@pytest.mark.parametrize("kernel, groups", [(128, 16), (16, 4), (7, 1)])
def test_cpu_positional_conv_equals_conv1d_with_gradients(kernel, groups):
    """The CPU channels-last conv2d route of the positional conv is the official conv1d, values and gradients."""
    from sonar_ray.models.transformer import WeightNormConv1d
    torch.manual_seed(0)
    conv = WeightNormConv1d(channels=4 * 16, kernel_size=kernel, groups=groups)
    x = torch.randn(2, 64, 37, requires_grad=True)
    fast = conv(x)
    weight = torch._weight_norm(conv.weight_v, conv.weight_g, 2)
    slow = torch.nn.functional.conv1d(x, weight, conv.bias, padding=kernel // 2, groups=groups)
    assert fast.shape == slow.shape == (2, 64, 37 + 1 - kernel % 2)
    assert torch.allclose(fast, slow, atol=1e-5)
    g = torch.randn_like(slow)
    params = [x, conv.weight_v, conv.weight_g, conv.bias]
    for a, b in zip(torch.autograd.grad(fast, params, g), torch.autograd.grad(slow, params, g)):
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)
