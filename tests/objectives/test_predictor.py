import torch

from sonar_ray.objectives.masking import gather_patches, random_patch_mask
from sonar_ray.objectives.predictor import LabelPredictor


def _inputs(B=2, P=32, D=24):
    g = torch.Generator().manual_seed(0)
    m = random_patch_mask(B, P, 0.75, generator=g)
    x_vis = gather_patches(torch.randn(B, P, D, generator=g), m.ids_keep)
    return x_vis, m


def test_forward_shape_and_mask_tokens_get_position():
    torch.manual_seed(0)
    pred = LabelPredictor(24, 50, dim=32, layers=2).eval()
    x_vis, m = _inputs()
    logits = pred(x_vis, m.ids_keep, 32)
    assert logits.shape == (2, 32, 50)
    # two masked positions of the same clip get different logits (positions are encoded)
    masked_ids = m.masked[0].nonzero().squeeze(1)
    assert not torch.allclose(logits[0, masked_ids[0]], logits[0, masked_ids[1]])


def test_grow_keeps_old_rows_bit_identical():
    torch.manual_seed(0)
    pred = LabelPredictor(24, 50, dim=32, layers=1).eval()
    x_vis, m = _inputs()
    before = pred(x_vis, m.ids_keep, 32)
    w, b = pred.head.weight.clone(), pred.head.bias.clone()
    pred.grow(7)
    assert pred.num_codes == 57
    assert torch.equal(pred.head.weight[:50], w) and torch.equal(pred.head.bias[:50], b)
    after = pred(x_vis, m.ids_keep, 32)
    assert after.shape == (2, 32, 57)
    assert torch.equal(after[..., :50], before)
    assert pred.head.weight.requires_grad


def test_padding_mask_excludes_padded_keys():
    torch.manual_seed(0)
    pred = LabelPredictor(24, 10, dim=32, layers=2).eval()
    ids_keep = torch.tensor([[0, 5, 11, 30]])  # slot 3 holds padded patch 30
    x_vis = torch.randn(1, 4, 24)
    pad = torch.zeros(1, 32, dtype=torch.bool)
    pad[0, 28:] = True
    a = pred(x_vis, ids_keep, 32, pad)
    x2 = x_vis.clone()
    x2[0, 3] += 5.0
    b = pred(x2, ids_keep, 32, pad)
    torch.testing.assert_close(a[0, :28], b[0, :28])  # real patches never attend to padded ones
    assert not torch.allclose(pred(x2, ids_keep, 32)[0, :28], a[0, :28])  # ...but do without the mask
