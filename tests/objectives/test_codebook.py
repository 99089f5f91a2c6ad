import torch
import torch.nn.functional as F
from torch import nn

from sonar_ray.objectives.codebook import OnlineCodebook, assign, new_codes

D = 16


class Embedding(nn.Module):
    """The official codebook tensors, as held by Tokenizer.quantize.embedding."""

    def __init__(self, codes: torch.Tensor):
        super().__init__()
        self.weight = nn.Parameter(codes.clone(), requires_grad=False)
        self.embed_avg = nn.Parameter(codes.clone(), requires_grad=False)
        self.cluster_size = nn.Parameter(torch.ones(len(codes)), requires_grad=False)


def _world(g, K=64):
    """Codes in the hemisphere facing away from `v`; a new-domain cluster (4 sub-clusters) around v."""
    v = F.normalize(torch.randn(D, generator=g), dim=0)
    codes = F.normalize(torch.randn(4 * K, D, generator=g), dim=-1)
    codes = codes[codes @ v < -0.1][:K]
    centers = F.normalize(v + 0.3 * torch.randn(4, D, generator=g), dim=-1)

    def new_domain(n=256):
        c = centers[torch.randint(0, 4, (n,), generator=g)]
        return F.normalize(c + 0.05 * torch.randn(n, D, generator=g), dim=-1)

    def prior(n=256, used=48):
        c = codes[torch.randint(0, used, (n,), generator=g)]
        return F.normalize(c + 0.05 * torch.randn(n, D, generator=g), dim=-1)

    return codes, new_domain, prior


def test_new_cluster_gets_codes_by_reanchoring():
    g = torch.Generator().manual_seed(0)
    codes, new_domain, _ = _world(g)
    emb = Embedding(codes)
    online = OnlineCodebook(len(codes), generator=torch.Generator().manual_seed(0))
    z = new_domain()
    err0 = assign(z, emb.weight)[1].mean()
    assert err0 > 1.0  # far from every code (cosine < 0.5 on average)
    for _ in range(5):
        stats = online.step(emb, new_domain())
    labels, err = assign(z, emb.weight)
    assert labels.unique().numel() >= 16  # many codes now serve the new cluster, no collapse onto one point
    assert err.mean() < 0.1 * err0
    assert stats["error"] < 0.1 * float(err0)
    torch.testing.assert_close(emb.weight.norm(dim=-1), torch.ones(len(codes)))
    # embed_avg follows the codes' directions (the invariant the EMA update relies on)
    torch.testing.assert_close(F.normalize(emb.embed_avg, dim=-1), emb.weight)


def test_prior_codes_stay_put_in_joint_batches():
    g = torch.Generator().manual_seed(1)
    codes, new_domain, prior = _world(g)
    emb = Embedding(codes)
    prior_share = torch.bincount(assign(prior(4096), codes)[0], minlength=len(codes)).float() / 4096
    assert (prior_share[:48] > 0).all() and (prior_share[48:] == 0).all()
    online = OnlineCodebook(len(codes), usage=prior_share, generator=torch.Generator().manual_seed(0))
    z_new = new_domain()
    err0 = assign(z_new, emb.weight)[1].mean()
    for _ in range(20):
        online.step(emb, torch.cat([prior(), new_domain()]))
    # codes the replayed prior data uses (0..47) do not move (up to re-normalization rounding)
    torch.testing.assert_close(emb.weight[:48], codes[:48], atol=1e-6, rtol=0)
    # never-used codes (48..63) moved onto the new domain, which is now well quantized
    assert assign(z_new, emb.weight)[0].ge(48).float().mean() > 0.9
    assert assign(z_new, emb.weight)[1].mean() < 0.25 * err0


def test_new_codes_land_where_quantization_is_worst():
    g = torch.Generator().manual_seed(2)
    codes, new_domain, prior = _world(g)
    added = new_codes(codes, new_domain(256), 6, generator=torch.Generator().manual_seed(0))
    assert added.shape == (6, D)
    torch.testing.assert_close(added.norm(dim=-1), torch.ones(6))
    z_new = new_domain(256)
    before = assign(z_new, codes)[1].mean()
    labels, err = assign(z_new, torch.cat([codes, added]))
    assert err.mean() < 0.2 * before
    # every new code serves part of the new domain (none wasted on one point or on prior data)
    assert labels.unique().tolist() == list(range(len(codes), len(codes) + 6))


def test_online_grow_tracks_appended_codes():
    online = OnlineCodebook(8)
    online.grow(4)
    assert online.usage.shape == (12,)


def test_usage_counts_the_reduced_global_batch():
    """`reduce` stands for the all-reduce over ranks: usage is the global batch's, not one rank's."""
    codes = F.normalize(torch.eye(4, D), dim=-1)
    emb = Embedding(codes)
    online = OnlineCodebook(4, decay=0.5, usage=torch.full((4,), 0.25))
    local = codes[[0, 0]]  # this rank's batch uses code 0 only
    other_rank = torch.tensor([0.0, 0.0, 2.0, 0.0])  # the other rank's batch used code 2 twice
    online.step(emb, local, reduce=lambda counts: counts + other_rank)
    torch.testing.assert_close(online.usage, torch.tensor([0.375, 0.125, 0.375, 0.125]))
