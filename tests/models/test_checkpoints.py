"""Official {'cfg', 'model'} checkpoints: round trips (local, s3://), format, bad files, deepcopy."""

import copy
import io

import pytest
import torch

from sonar_ray import storage
from sonar_ray.models import beats, tokenizer
from sonar_ray.models.beats import BEATs, BEATsConfig
from sonar_ray.models.tokenizer import Tokenizer, TokenizerConfig

ODD = BEATsConfig(input_patch_size=16, embed_dim=96, encoder_layers=3, encoder_embed_dim=96,
                  encoder_ffn_embed_dim=160, encoder_attention_heads=6, layer_norm_first=True,
                  conv_pos=8, conv_pos_groups=4, finetuned_model=True, predictor_class=5)


def outputs(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    src = torch.rand(2, 16000, generator=g) * 2 - 1
    pm = torch.zeros(2, 16000, dtype=torch.bool)
    pm[1, 12000:] = True
    with torch.no_grad():
        if isinstance(model, Tokenizer):
            return model.extract_labels(src, pm)
        return model.extract_features(src, pm)[0]


def perturbed(model, seed=1):
    """Random non-trivial weights (a fresh model has zero biases, unit LayerNorms, ...)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=g))
    return model.eval()


def check_official_format(raw: bytes, model):
    ck = torch.load(io.BytesIO(raw), weights_only=True)
    assert set(ck) == {"cfg", "model"}
    assert ck["cfg"] == model.cfg.to_dict() and all(isinstance(v, (int, float, bool, str)) for v in ck["cfg"].values())
    assert list(ck["model"]) == list(model.state_dict())
    assert all(type(v) is torch.Tensor and v.device.type == "cpu" for v in ck["model"].values())
    rel = [k for k in ck["model"] if k.endswith("relative_attention_bias.weight")]
    assert len(rel) in (0, model.cfg.encoder_layers)
    assert all(torch.equal(ck["model"][k], ck["model"][rel[0]]) for k in rel)
    assert {"encoder.pos_conv.0.weight_g", "encoder.pos_conv.0.weight_v"} <= set(ck["model"])
    return ck


@pytest.mark.parametrize("cfg", [BEATsConfig.preset("tiny"), ODD], ids=["tiny", "odd"])
def test_beats_round_trip_local(tmp_path, cfg):
    torch.manual_seed(0)
    model = perturbed(BEATs(cfg))
    path = tmp_path / "sub" / "model.pt"
    beats.save_checkpoint(model, str(path))
    check_official_format(path.read_bytes(), model)
    loaded = beats.load_checkpoint(str(path))
    assert not loaded.training and loaded.cfg == cfg
    assert torch.equal(outputs(loaded), outputs(model))
    assert [p.name for p in tmp_path.joinpath("sub").iterdir()] == ["model.pt"]  # no temp files left


def test_fixture_checkpoints_resave_identically(fixtures_dir, tmp_path):
    for name, lib in [("beats_tiny.pt", beats), ("beats_tiny_finetuned.pt", beats), ("tokenizer_tiny.pt", tokenizer)]:
        ref = torch.load(fixtures_dir / name, weights_only=True)
        lib.save_checkpoint(lib.load_checkpoint(str(fixtures_dir / name)), str(tmp_path / name))
        ck = torch.load(tmp_path / name, weights_only=True)
        assert ck["cfg"] == ref["cfg"]
        assert set(ck["model"]) == set(ref["model"])
        assert all(torch.equal(ck["model"][k], ref["model"][k]) for k in ref["model"]), name


def test_tokenizer_round_trip_via_s3(s3_bucket, fixtures_dir):
    tok = tokenizer.load_checkpoint(str(fixtures_dir / "tokenizer_tiny.pt"))
    uri = f"{s3_bucket}/runs/a/tokenizer.pt"
    tokenizer.save_checkpoint(tok, uri)
    ck = torch.load(io.BytesIO(storage.read_bytes(uri)), weights_only=True)
    assert {"quantize.embedding.initted", "quantize.cluster_size", "quantize.embedding.embed_avg"} <= set(ck["model"])
    loaded = tokenizer.load_checkpoint(uri)
    assert torch.equal(outputs(loaded), outputs(tok))
    emb = loaded.quantize.embedding
    assert not any(p.requires_grad for p in (emb.weight, emb.cluster_size, emb.embed_avg))
    assert {k for k, _ in loaded.named_buffers()} == {"quantize.embedding.initted", "quantize.cluster_size"}


def test_beats_round_trip_via_s3(s3_bucket):
    torch.manual_seed(0)
    model = perturbed(BEATs(BEATsConfig.preset("tiny", finetuned_model=True, predictor_class=7)))
    uri = f"{s3_bucket}/model.pt"
    beats.save_checkpoint(model, uri)
    assert torch.equal(outputs(beats.load_checkpoint(uri)), outputs(model))


def test_uninitialised_codebook_refuses_labels():
    tok = Tokenizer(TokenizerConfig.preset("tiny")).eval()
    with pytest.raises(RuntimeError, match="initted"):
        outputs(tok)


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    model = BEATs(BEATsConfig.preset("tiny"))
    path = tmp_path / "model.pt"
    beats.save_checkpoint(model, str(path))
    return path, torch.load(path, weights_only=True)


def resave(path, ck):
    torch.save(ck, path)
    return str(path)


def test_truncated_or_garbage_file(saved, tmp_path):
    path, _ = saved
    cut = tmp_path / "cut.pt"
    cut.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        beats.load_checkpoint(str(cut))
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="truncated or corrupt"):
        beats.load_checkpoint(str(junk))
    with pytest.raises(FileNotFoundError):
        beats.load_checkpoint(str(tmp_path / "absent.pt"))


def test_missing_cfg_or_model(saved, tmp_path):
    path, ck = saved
    with pytest.raises(ValueError, match="'cfg'.*found \\['model'\\]"):
        beats.load_checkpoint(resave(tmp_path / "a.pt", {"model": ck["model"]}))
    with pytest.raises(ValueError, match="found \\['cfg'\\]"):
        beats.load_checkpoint(resave(tmp_path / "b.pt", {"cfg": ck["cfg"]}))
    with pytest.raises(ValueError, match="found Tensor"):
        beats.load_checkpoint(resave(tmp_path / "c.pt", torch.zeros(3)))


def test_wrong_keys_and_shapes_are_named(saved, tmp_path):
    path, ck = saved
    sd = dict(ck["model"])
    sd["encoder.layers.1.fc1.weight"] = torch.zeros(3, 3)
    del sd["encoder.layer_norm.bias"]
    sd["encoder.extra.weight"] = torch.zeros(1)
    with pytest.raises(ValueError) as err:
        beats.load_checkpoint(resave(tmp_path / "bad.pt", {"cfg": ck["cfg"], "model": sd}))
    msg = str(err.value)
    assert "missing keys: encoder.layer_norm.bias" in msg
    assert "unexpected keys: encoder.extra.weight" in msg
    assert "encoder.layers.1.fc1.weight (3, 3) (model (128, 64))" in msg
    # A checkpoint of another architecture: every mismatch is named, not just the first.
    with pytest.raises(ValueError, match="predictor.weight"):
        beats.load_checkpoint(resave(tmp_path / "ft.pt", {"cfg": {**ck["cfg"], "finetuned_model": True},
                                                         "model": ck["model"]}))
    sd = dict(ck["model"])
    sd["encoder.layers.1.self_attn.relative_attention_bias.weight"] = sd[
        "encoder.layers.1.self_attn.relative_attention_bias.weight"] + 1
    with pytest.raises(ValueError, match="relative_attention_bias differ"):
        beats.load_checkpoint(resave(tmp_path / "rel.pt", {"cfg": ck["cfg"], "model": sd}))


def test_deepcopy_after_forward_and_backward(fixtures_dir):
    model = beats.load_checkpoint(str(fixtures_dir / "beats_tiny.pt")).train()
    x, _ = model.encode(model.embed(torch.randn(2, 32, 128)))
    x.sum().backward()
    teacher = copy.deepcopy(model).eval()
    model.eval()
    assert torch.equal(outputs(teacher), outputs(model))
    assert copy.deepcopy(tokenizer.load_checkpoint(str(fixtures_dir / "tokenizer_tiny.pt"))) is not None
