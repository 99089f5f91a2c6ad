import pytest
import torch
import torch.nn.functional as F

from sonar_ray.models.beats import BEATs, BEATsConfig
from sonar_ray.models.tokenizer import Tokenizer, TokenizerConfig, load_checkpoint, save_checkpoint
from sonar_ray.objectives.codebook import OnlineCodebook, assign, grow_tokenizer, new_codes
from sonar_ray.objectives.predictor import LabelPredictor
from sonar_ray.objectives.health import label_health
from sonar_ray.objectives.tokenizer_training import (FeatureEstimator, TokenizerTrainConfig, TokenizerTrainer, ema_update,
                                                     kmeans_init, restart_dead_codes, tokenizer_loss)

from .synth import normalized_fbank, synth_clips


def _setup(seed=0):
    torch.manual_seed(seed)
    tok = Tokenizer(TokenizerConfig.preset("tiny", dropout=0.0, attention_dropout=0.0))
    teacher = BEATs(BEATsConfig.preset("tiny")).eval()
    est = FeatureEstimator(tok.cfg.quant_dim, teacher.cfg.encoder_embed_dim, dim=64, layers=3)
    return tok, teacher, est


def test_kmeans_init_and_ema_keep_unit_codes():
    emb = Tokenizer(TokenizerConfig.preset("tiny")).quantize.embedding
    g = torch.Generator().manual_seed(0)  # not the global RNG: the outcome must not depend on test order
    z = F.normalize(torch.randn(500, 16, generator=g), dim=-1)
    kmeans_init(emb, z, generator=torch.Generator().manual_seed(0))
    assert emb.initted.item() == 1
    torch.testing.assert_close(emb.weight.norm(dim=-1), torch.ones(32))
    assert emb.cluster_size.sum().item() == 500
    labels = (z @ emb.weight.T).argmax(-1)
    before = emb.weight.clone()
    ema_update(emb, z, labels, decay=0.99)
    torch.testing.assert_close(emb.weight.norm(dim=-1), torch.ones(32))
    torch.testing.assert_close(emb.weight, F.normalize(emb.embed_avg, dim=-1))
    assert not torch.equal(emb.weight, before)
    # a code that receives nothing keeps its direction; the others move toward their (new) features
    before = emb.weight.clone()
    fresh = F.normalize(torch.randn(500, 16, generator=g), dim=-1)
    labels = assign(fresh, emb.weight)[0]
    ema_update(emb, fresh[labels != 0], labels[labels != 0])
    torch.testing.assert_close(emb.weight[0], before[0])
    assert not torch.allclose(emb.weight[1:], before[1:])


def test_training_step_lowers_loss_on_fixed_batch(fbank_batch):
    tok, teacher, est = _setup()
    frame_pad = torch.zeros(fbank_batch.shape[:2], dtype=torch.bool)
    frame_pad[2, 70:] = True
    pad = tok.patch_padding_mask(frame_pad, 48)
    with torch.no_grad():
        _, layers = teacher.encode(teacher.embed(fbank_batch), pad)
    target = layers[-1]  # (B, P, D)
    params = [p for m in (tok, est) for p in m.parameters() if p.requires_grad]
    assert all(not p.requires_grad for p in tok.quantize.parameters())  # the codebook is EMA-only
    opt = torch.optim.AdamW(params, lr=1e-3)
    with torch.no_grad():
        z = torch.nn.functional.normalize(tok.quantize_input(fbank_batch, frame_pad)[~pad], dim=-1)
    kmeans_init(tok.quantize.embedding, z)
    losses = []
    for _ in range(40):
        out = tokenizer_loss(tok, est, fbank_batch, target, pad, frame_pad)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(out["loss"].item())
    print(f"tokenizer loss {losses[0]:.3f} -> {losses[-1]:.3f}, coverage {out['label_coverage']:.2f}")
    assert tok.quantize.embedding.initted.item() == 1
    assert losses[-1] < 0.5 * losses[0]
    torch.testing.assert_close(tok.quantize.embedding.weight.norm(dim=-1), torch.ones(32))
    # the straight-through estimator lets the cosine loss reach the tokenizer's encoder
    assert tok.patch_embedding.weight.grad.abs().sum() > 0
    # trained labels come out of the official inference path
    assert torch.equal(tok.labels_from_fbank(fbank_batch, frame_pad), out["labels"])


def test_grow_tokenizer_keeps_old_codes_and_checkpoint_loads(fbank_batch, tmp_path):
    tok, teacher, est = _setup()
    with torch.no_grad():
        _, layers = teacher.encode(teacher.embed(fbank_batch))
        kmeans_init(tok.quantize.embedding, torch.nn.functional.normalize(tok.quantize_input(fbank_batch), dim=-1).flatten(0, 1))
        tokenizer_loss(tok, est, fbank_batch, layers[-1])  # one EMA step
        feats = tok.quantize_input(fbank_batch).flatten(0, 1)  # (N, 16)
    old = {k: v.clone() for k, v in tok.state_dict().items()}
    added = new_codes(tok.quantize.embedding.weight, feats, 8, generator=torch.Generator().manual_seed(0))
    grow_tokenizer(tok, added)
    emb = tok.quantize.embedding
    assert tok.cfg.quant_n == 40 and emb.weight.shape == (40, 16)
    for name in ("weight", "embed_avg", "cluster_size"):
        assert torch.equal(getattr(emb, name)[:32], old[f"quantize.embedding.{name}"])
        assert not getattr(emb, name).requires_grad
    assert torch.equal(tok.quantize.cluster_size[:32], old["quantize.cluster_size"])
    torch.testing.assert_close(emb.weight[32:], added)
    labels = tok.labels_from_fbank(fbank_batch)
    assert labels.max() < 40
    # the grown state dict loads strictly into a fresh Tokenizer, and survives the official checkpoint
    fresh = Tokenizer(TokenizerConfig.from_dict(tok.cfg.to_dict()))
    fresh.load_state_dict(tok.state_dict())
    save_checkpoint(tok, str(tmp_path / "tok.pt"))
    assert torch.equal(load_checkpoint(str(tmp_path / "tok.pt")).labels_from_fbank(fbank_batch), labels)
    # the companions grow alongside
    pred, online = LabelPredictor(64, 32, dim=32, layers=1), OnlineCodebook(32)
    pred.grow(8)
    online.grow(8)
    assert pred.num_codes == online.usage.numel() == tok.cfg.quant_n


def test_quantized_step_needs_an_initialized_codebook(fbank_batch):
    tok, teacher, est = _setup()
    with torch.no_grad():
        _, layers = teacher.encode(teacher.embed(fbank_batch))
    with pytest.raises(RuntimeError, match="kmeans_init"):
        tokenizer_loss(tok, est, fbank_batch, layers[-1])
    out = tokenizer_loss(tok, est, fbank_batch, layers[-1], quantize=False)  # warm-up: no codebook needed
    assert "labels" not in out and out["commit"] == 0 and tok.quantize.embedding.initted.item() == 0


def test_dead_codes_restart_on_current_features():
    emb = Tokenizer(TokenizerConfig.preset("tiny")).quantize.embedding
    z = F.normalize(torch.randn(400, 16), dim=-1)
    kmeans_init(emb, z, generator=torch.Generator().manual_seed(0), batches=4)
    assert emb.cluster_size.sum().item() == 100  # per-batch scale
    far = -F.normalize(z.mean(0), dim=-1)
    emb.weight[:5] = far  # five codes stranded where no feature lies
    emb.cluster_size[:5] = 0.0
    restarted = restart_dead_codes(emb, z, dead_count=1.0, generator=torch.Generator().manual_seed(0))
    assert restarted >= 5
    assert torch.all((emb.weight[:5] @ z.T).max(dim=1).values > 0.999)  # each sits on a real feature now
    torch.testing.assert_close(emb.weight, F.normalize(emb.embed_avg, dim=-1))
    assert restart_dead_codes(emb, z, dead_count=0.0) == 0


def _train_and_measure(cfg: TokenizerTrainConfig) -> dict:
    torch.manual_seed(0)
    teacher = BEATs(BEATsConfig.preset("tiny", dropout=0.0, attention_dropout=0.0))
    trainer = TokenizerTrainer(cfg, teacher)
    train = [normalized_fbank(synth_clips(8, 1.0, seed=s)) for s in range(6)]  # a mixture of 5 sound kinds
    pad = torch.zeros(train[0].shape[:2], dtype=torch.bool)
    for step in range(cfg.steps):
        trainer.train_step(train[step % len(train)], pad)
    held = normalized_fbank(synth_clips(20, 1.0, seed=99))
    with torch.no_grad():
        labels = trainer.tokenizer.eval().labels_from_fbank(held)
    return label_health(labels.flatten(), cfg.quant_n)


def test_tokenizer_training_does_not_collapse_on_a_synthetic_mixture():
    """The old recipe (k-means on the random encoder's first batch, no restarts, slow EMA) leaves most codes
    dead; warm-up, pooled k-means and restarts keep the codebook in use."""
    common = dict(steps=40, quant_n=64, quant_dim=16, encoder_layers=1, lr=1e-3)
    old = _train_and_measure(TokenizerTrainConfig(**common, warmup_share=0.0, ema_decay=0.99, dead_count=0.0,
                                                  commit_weight=1.0))
    new = _train_and_measure(TokenizerTrainConfig(**common))
    print(f"old {old}  new {new}")
    assert new["live_code_share"] >= 0.6 and new["label_perplexity"] >= 16
    assert new["live_code_share"] > old["live_code_share"] + 0.15
