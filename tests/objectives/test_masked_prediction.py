import torch

from sonar_ray.models.beats import BEATs, BEATsConfig
from sonar_ray.objectives.distill import feature_distill_loss
from sonar_ray.objectives.masked_prediction import MaskedTokenModel, masked_prediction_loss
from sonar_ray.objectives.masking import gather_patches
from sonar_ray.objectives.predictor import LabelPredictor
from sonar_ray.objectives.random_projection import RandomProjectionTokenizer

from .synth import normalized_fbank, synth_clips


def _model(K=1024, seed=0):
    torch.manual_seed(seed)
    cfg = BEATsConfig.preset("tiny", dropout=0.0, attention_dropout=0.0)
    return MaskedTokenModel(BEATs(cfg), LabelPredictor(cfg.encoder_embed_dim, K, dim=64, layers=2))


def test_loss_only_on_masked_real_patches():
    logits = torch.randn(2, 6, 5)
    labels = torch.randint(0, 5, (2, 6))
    target = torch.tensor([[1, 1, 0, 0, 0, 0], [0, 1, 0, 0, 0, 0]], dtype=torch.bool)
    out = masked_prediction_loss(logits, labels, target)
    ref = torch.nn.functional.cross_entropy(logits[target], labels[target])
    torch.testing.assert_close(out["loss"], ref)
    assert out["logits"].shape == (3, 5)
    assert out["label_coverage"] == labels[target].unique().numel() / 5
    hit = logits.argmax(-1) == labels
    torch.testing.assert_close(out["accuracy"], hit[target].float().mean())
    torch.testing.assert_close(out["visible_accuracy"], hit[~target].float().mean())


def test_padding_is_ignored_end_to_end(fbank_batch):
    model = _model().eval()
    tok = RandomProjectionTokenizer()
    fb = fbank_batch[:3]
    frame_pad = torch.zeros(fb.shape[:2], dtype=torch.bool)
    frame_pad[1, 60:] = True
    pad = model.encoder.patch_padding_mask(frame_pad, 48)  # (B, P)
    assert pad[1].any() and not pad[0].any()
    labels = tok.labels_from_fbank(fb)
    out = model(fb, labels, pad, generator=torch.Generator().manual_seed(0))
    assert out["layer_results"][-1].shape == (3, out["mask"].num_visible, 64)
    assert not (out["mask"].target & pad).any()
    # other content and other labels in the padded region change nothing
    fb2, labels2 = fb.clone(), labels.clone()
    fb2[1, 64:] = torch.randn_like(fb2[1, 64:])  # frames 64.. only feed padded patches' time blocks
    labels2[pad] = 7
    out2 = model(fb2, labels2, pad, mask=out["mask"])
    torch.testing.assert_close(out2["loss"], out["loss"])


def test_bf16_autocast_safe(fbank_batch):
    model = _model()
    labels = RandomProjectionTokenizer().labels_from_fbank(fbank_batch)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(fbank_batch, labels, generator=torch.Generator().manual_seed(0))
    assert out["loss"].dtype == torch.float32 and torch.isfinite(out["loss"])
    out["loss"].backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_feature_distill_zero_against_identical_teacher(fbank_batch):
    student = _model()
    labels = RandomProjectionTokenizer().labels_from_fbank(fbank_batch)
    out = student(fbank_batch, labels, generator=torch.Generator().manual_seed(0))
    teacher = BEATs(student.encoder.cfg)  # built from the state dict (deepcopy breaks on weight_norm)
    teacher.load_state_dict(student.encoder.state_dict())
    teacher.requires_grad_(False)
    m = out["mask"]
    with torch.no_grad():
        _, t_layers = teacher.encode(gather_patches(teacher.embed(fbank_batch), m.ids_keep), m.visible_padding,
                                     positions=m.ids_keep)
    loss = feature_distill_loss(out["layer_results"], t_layers, m.visible_padding, layers=(0, -1))
    # the grad-mode student and the no-grad teacher may take different attention kernels: ~1e-15, not 0
    assert loss.item() < 1e-10


def test_overfit_few_clips():
    """Masked-token loss on 8 synthetic clips halves within 300 steps (tiny BEATs, random-projection labels)."""
    torch.manual_seed(0)
    fb = normalized_fbank(synth_clips(8, 1.0, seed=0))  # (8, 98, 128)
    labels = RandomProjectionTokenizer().labels_from_fbank(fb)  # (8, 48)
    model = _model()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(0)
    first = None
    for step in range(300):
        out = model(fb, labels, generator=g)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        first = first or out["loss"].item()
        if out["loss"].item() < first / 2:
            break
    print(f"overfit: loss {first:.2f} -> {out['loss'].item():.2f} in {step + 1} steps, "
          f"masked accuracy {out['accuracy'].item():.2f}")
    assert out["loss"].item() < first / 2
    assert out["accuracy"] > 0.2
