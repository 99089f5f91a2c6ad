import pytest
import torch

from sonar_ray.objectives.distill import feature_distill_loss, token_distill_loss


def _mask(B=2, P=12):
    m = torch.zeros(B, P, dtype=torch.bool)
    m[:, ::2] = True
    return m


def test_token_kl_zero_when_equal_and_grads_only_to_student():
    teacher_net = torch.nn.Linear(8, 20)
    student_net = torch.nn.Linear(8, 20)
    student_net.load_state_dict(teacher_net.state_dict())
    x = torch.randn(2, 12, 8)
    loss = token_distill_loss(student_net(x), teacher_net(x), _mask(), temperature=2.0)
    assert loss.item() == 0.0
    # perturb the student: positive loss, gradient only on the student
    with torch.no_grad():
        student_net.weight.add_(0.1 * torch.randn_like(student_net.weight))
    loss = token_distill_loss(student_net(x), teacher_net(x), _mask(), temperature=2.0)
    assert loss.item() > 0
    loss.backward()
    assert student_net.weight.grad is not None and student_net.weight.grad.abs().sum() > 0
    assert teacher_net.weight.grad is None


def test_token_kl_only_masked_positions_and_grown_student():
    t = torch.randn(2, 12, 20)
    s = t.clone()
    s[~_mask()] += torch.randn_like(s[~_mask()])  # differences only outside the mask
    s = torch.cat([s, torch.randn(2, 12, 5)], dim=-1)  # student grew by 5 codes
    assert token_distill_loss(s, t, _mask()).item() == 0.0


def test_token_kl_compares_only_the_codes_both_still_share():
    """Where re-anchoring moved a code, the teacher's belief about it says nothing about the student's code."""
    t = torch.randn(2, 12, 20)
    s = t.clone()
    s[..., 3] += 5.0  # the student now predicts its moved code 3 where the teacher predicted its old one
    shared = torch.ones(20, dtype=torch.bool)
    assert token_distill_loss(s, t, _mask()).item() > 0
    shared[3] = False
    assert token_distill_loss(s, t, _mask(), codes=shared).item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("kind", ["cosine", "mse"])
def test_feature_distill_zero_when_equal_grads_only_to_student(kind):
    layers = [torch.randn(2, 12, 16) for _ in range(3)]
    student = [t.clone().requires_grad_() for t in layers]
    teacher = [t.clone().requires_grad_() for t in layers]
    pad = torch.zeros(2, 12, dtype=torch.bool)
    pad[1, 8:] = True
    assert feature_distill_loss(student, teacher, pad, kind=kind, layers=(0, -1)).item() == 0.0
    shifted = [s + 0.5 * torch.randn_like(s) for s in student]
    loss = feature_distill_loss(shifted, teacher, pad, kind=kind, layers=(0, -1))
    assert loss.item() > 0
    loss.backward()
    assert student[0].grad.abs().sum() > 0 and student[2].grad.abs().sum() > 0
    assert student[1].grad is None or student[1].grad.abs().sum() == 0  # layer 1 not selected
    assert all(t.grad is None for t in teacher)
    assert student[0].grad[1, 8:].abs().sum() == 0  # padded patches do not count


def test_feature_distill_ignores_padded_differences():
    t = torch.randn(1, 10, 8)
    s = t.clone()
    s[0, 7:] = 100.0
    pad = torch.zeros(1, 10, dtype=torch.bool)
    pad[0, 7:] = True
    assert feature_distill_loss([s], [t], pad, kind="mse").item() == 0.0
    with pytest.raises(ValueError):
        feature_distill_loss([s], [t], pad, kind="l1")
