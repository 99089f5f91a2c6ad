import torch

from sonar_ray.objectives.masking import gather_patches, random_patch_mask


def _padding(B=4, P=48, real=(48, 40, 20, 5)):
    pad = torch.ones(B, P, dtype=torch.bool)
    for b, n in enumerate(real):
        pad[b, :n] = False
    return pad


def test_shapes_and_ratio_without_padding():
    m = random_patch_mask(3, 96, 0.75, generator=torch.Generator().manual_seed(0))
    assert m.ids_keep.shape == (3, 24)
    assert m.masked.shape == (3, 96) and m.masked.sum(1).tolist() == [72, 72, 72]
    assert torch.equal(m.target, m.masked)
    assert not m.visible_padding.any()
    assert (m.ids_keep.diff(dim=1) > 0).all()  # ascending, no duplicates
    # masked is exactly the complement of ids_keep
    assert not m.masked.gather(1, m.ids_keep).any()


def test_padding_never_a_target_and_real_patches_masked_at_ratio():
    pad = _padding()
    m = random_patch_mask(4, 48, 0.75, pad, torch.Generator().manual_seed(1))
    assert not (m.target & pad).any()
    real = (~pad).sum(1)
    visible_real = (~m.visible_padding).sum(1)
    assert visible_real.tolist() == (real.float() * 0.25).round().long().clamp(min=1).tolist()
    assert torch.equal(m.target.sum(1), real - visible_real)
    # rectangular: every clip has the same number of visible slots, extra slots hold padded patches
    assert m.num_visible == int(visible_real.max())
    assert torch.equal(m.visible_padding, pad.gather(1, m.ids_keep))
    assert (m.ids_keep.diff(dim=1) > 0).all()


def test_seeded_determinism_and_variation():
    pad = _padding()
    a = random_patch_mask(4, 48, 0.75, pad, torch.Generator().manual_seed(7))
    b = random_patch_mask(4, 48, 0.75, pad, torch.Generator().manual_seed(7))
    c = random_patch_mask(4, 48, 0.75, pad, torch.Generator().manual_seed(8))
    assert torch.equal(a.ids_keep, b.ids_keep) and torch.equal(a.masked, b.masked)
    assert not torch.equal(a.masked, c.masked)
    # clips differ from each other too
    assert not torch.equal(a.masked[0], a.masked[1])


def test_gather_patches():
    x = torch.arange(2 * 5 * 3).float().view(2, 5, 3)
    ids = torch.tensor([[0, 4], [1, 2]])
    out = gather_patches(x, ids)
    assert torch.equal(out[0, 1], x[0, 4]) and torch.equal(out[1, 0], x[1, 1])
