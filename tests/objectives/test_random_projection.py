import math

import torch
import torch.nn.functional as F

from sonar_ray.objectives.random_projection import RandomProjectionConfig, RandomProjectionTokenizer, fbank_patches


def perplexity(labels: torch.Tensor, K: int) -> float:
    p = torch.bincount(labels.flatten(), minlength=K).float()
    p = p[p > 0] / p.sum()
    return float(torch.exp(-(p * p.log()).sum()))


def test_patches_follow_beats_patch_order():
    fb = torch.randn(2, 37, 128)  # 37 frames: the last 5 are dropped like the stride-16 conv does
    conv = torch.nn.Conv2d(1, 256, 16, stride=16, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.eye(256).view(256, 1, 16, 16))  # output channel c = pixel c of the patch
        ref = conv(fb.unsqueeze(1)).flatten(2).transpose(1, 2)  # (B, P, 256), BEATs' embed order
    torch.testing.assert_close(fbank_patches(fb), ref)


def test_seeded_frozen_and_saveable(fbank_batch):
    a = RandomProjectionTokenizer(RandomProjectionConfig(seed=3))
    b = RandomProjectionTokenizer(RandomProjectionConfig(seed=3))
    c = RandomProjectionTokenizer(RandomProjectionConfig(seed=4))
    la = a.labels_from_fbank(fbank_batch)
    assert la.shape == (10, 6 * 8) and la.dtype == torch.int64
    assert torch.equal(la, b.labels_from_fbank(fbank_batch))
    assert not torch.equal(la, c.labels_from_fbank(fbank_batch))
    assert not any(p.requires_grad for p in a.parameters()) and len(list(a.parameters())) == 0
    torch.testing.assert_close(a.codebook.norm(dim=-1), torch.ones(1024))
    # checkpoint round trip, also through torch.save / weights_only load
    ck = a.checkpoint()
    path = "/tmp/_rp_tok_test.pt"
    torch.save(ck, path)
    restored = RandomProjectionTokenizer.from_checkpoint(torch.load(path, weights_only=True))
    assert torch.equal(restored.labels_from_fbank(fbank_batch), la)


def test_global_fbank_normalization_does_not_change_labels(fbank_batch):
    tok = RandomProjectionTokenizer()
    # per-patch standardization makes labels invariant to the fbank mean/std convention
    assert torch.equal(tok.labels_from_fbank(fbank_batch), tok.labels_from_fbank(3.0 * fbank_batch + 1.5))


def test_perplexity_floor_and_gain_from_patch_normalization(fbank_batch):
    tok = RandomProjectionTokenizer()
    labels = tok.labels_from_fbank(fbank_batch)  # 480 patches of varied sounds
    ppl = perplexity(labels, tok.num_codes)
    # the same projection without per-patch standardization (what SCIENCE-NOTES warns about)
    raw = F.normalize(fbank_patches(fbank_batch) @ tok.projection, dim=-1)
    ppl_raw = perplexity((raw @ tok.codebook.T).argmax(-1), tok.num_codes)
    print(f"random-projection perplexity: {ppl:.1f} (unnormalized patches: {ppl_raw:.1f}) of 1024, 480 patches")
    assert ppl > 60
    assert ppl > 2 * ppl_raw


def test_level_centred_labels_keep_loudness_that_standardization_erases(fbank_batch):
    """The same sounds 20 dB louder: per-patch standardization gives identical labels (loudness, what context
    predicts best, is gone from the target), centring on a level gives the louder patches other codes."""
    from sonar_ray.objectives.random_projection import median_patch_level

    louder = fbank_batch + math.log(100.0) / (2 * 6.55582)  # +20 dB in BEATs' normalized fbank units
    pad = torch.zeros(fbank_batch.shape[:2], dtype=torch.bool)
    standardized = RandomProjectionTokenizer(RandomProjectionConfig(seed=0))
    centred = RandomProjectionTokenizer(RandomProjectionConfig(seed=0, level=median_patch_level(fbank_batch, pad)))
    same = lambda tok: (tok.labels_from_fbank(fbank_batch) == tok.labels_from_fbank(louder)).float().mean()  # noqa: E731
    assert same(standardized) > 0.95
    assert same(centred) < 0.5
    # the level travels with the checkpoint
    again = RandomProjectionTokenizer.from_checkpoint(centred.checkpoint())
    assert torch.equal(again.labels_from_fbank(louder), centred.labels_from_fbank(louder))


def test_median_patch_level_ignores_padding():
    from sonar_ray.objectives.random_projection import median_patch_level

    fb = torch.full((1, 64, 128), 0.3)
    pad = torch.zeros(1, 64, dtype=torch.bool)
    fb[:, 32:], pad[:, 32:] = -2.39, True  # the padded half sits at the log floor
    assert abs(median_patch_level(fb, pad) - 0.3) < 1e-6
