"""The quantization-error term as the official code computes it, and gradient clipping, on hand-made layers."""
from __future__ import annotations

import pytest
import torch

from mpq.method.losses import coupled_rounding_error, grid, quantization_error
from mpq.method.supernet import Supernet
from mpq.models import create_model
from mpq.training.oneshot import train_step
from mpq.training.recipe import OneShotConfig
from mpq.training.steps import clip_gradients

pytestmark = pytest.mark.timeout(60)


def _term(w, s, bits, lowest):
    weight = torch.tensor(w, requires_grad=True)
    step = torch.tensor(s, requires_grad=True)
    loss = coupled_rounding_error(weight, step, *grid(bits, lowest))
    loss.backward()
    return loss.item(), weight.grad, step.grad


def test_at_the_lowest_candidate_every_weight_is_pulled_to_its_clipped_grid_point():
    # two output channels of two weights; 2-bit codes -2..1, step 0.1: range [-0.2, 0.1]
    w = [[0.03, -0.26], [0.12, 0.17]]
    loss, g, gs = _term(w, 0.1, 2, 2)
    # clipped: [[0.03, -0.2], [0.1, 0.1]]; targets: [[0.0, -0.2], [0.1, 0.1]] -> errors [[0.03, 0], [0, 0]]
    # summed over output channels (dim 0): [0.03^2, 0]; averaged over the rest: 0.03^2 / 2
    assert loss == pytest.approx(0.03 ** 2 / 2)
    # gradient 2 * error / 2 (the mean over two columns); clipped weights (beyond the range) get none
    assert torch.allclose(g, torch.tensor([[0.03, 0.0], [0.0, 0.0]]))
    assert gs is None                              # the step size is not trained by this term
    # no division by the step size: halving the step (same codes) scales the error, not its inverse
    loss_half, _, _ = _term([[0.015, -0.13], [0.06, 0.085]], 0.05, 2, 2)
    assert loss_half == pytest.approx(loss / 4)


def test_above_the_lowest_candidate_only_codes_shared_with_it_are_pulled():
    # 4-bit codes -8..7 in a layer whose lowest candidate is 2 bits: pulled codes -8, -4, 0, 4
    s = 0.01
    codes_and_offsets = [(4, 0.3), (5, 0.3), (-4, -0.2), (7, 0.1), (0, 0.4), (-8, -0.1), (2, 0.2), (-3, 0.1)]
    w = [[(c + o) * s for c, o in codes_and_offsets]]
    loss, g, _ = _term(w, s, 4, 2)
    expected = torch.tensor([[0.3 * s, 0.0, -0.2 * s, 0.0, 0.4 * s, 0.0, 0.0, 0.0]])
    # -8 - 0.1 lies below the range: clipped to -8 exactly, no error; 5, 7, 2, -3 are not on the 2-bit grid
    assert loss == pytest.approx(float((expected ** 2).sum()) / 8)
    assert torch.allclose(g, 2 * expected / 8)
    # with 3 bits as the lowest candidate (spacing 2, codes -8..6 even), code 2 is pulled too, 7 is still not
    _, g3, _ = _term(w, s, 4, 3)
    assert g3[0, 6] == pytest.approx(2 * 0.2 * s / 8) and g3[0, 3] == 0 and g3[0, 1] == 0


def test_grid_refuses_a_lowest_candidate_above_the_bit_width():
    assert grid(6, 3) == (-32, 31, 8, 24)
    with pytest.raises(ValueError, match="lowest candidate"):
        grid(3, 4)


def test_supernet_term_uses_each_layers_current_lowest_candidate():
    torch.manual_seed(0)
    sn = Supernet(create_model("resnet20", width_mult=0.25), (1, 28, 28))
    sn.calibrate(torch.randn(8, 1, 28, 28))
    sn.set_config({n: (4, 4) for n in sn.searchable})
    full = quantization_error(sn).item()
    lifted = {n: ((3, 4, 5, 6), a) for n, (w, a) in sn.choices.items() if min(w) == 2}
    raised = quantization_error(sn, {**sn.choices, **lifted}).item()
    # with 3 bits lowest, a 4-bit layer pulls every even code instead of every fourth: more weights, more error
    assert raised > full > 0


def _step_grads(cfg, seed=0):
    torch.manual_seed(1)
    sn = Supernet(create_model("resnet20", width_mult=0.25), (1, 28, 28))
    x, y = 30 * torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))
    sn.calibrate(x)
    train_step(sn, x, y, cfg, torch.Generator().manual_seed(seed), qe_weight=0.0)
    return {n: p for n, p in sn.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("cancel", [False, True])
def test_gradients_are_clipped_element_wise_after_all_paths_and_before_weight_decay(cancel):
    """The clip comes after every path's gradients and before the weight decay; the official 2-bit decay
    correction (``cancel``) is part of the paths' gradients, so it is clipped with them (the same identity holds)."""
    base = dict(num_random_paths=2, scheduler=False, idm=False, cancel_2bit_decay=cancel, weight_decay=0.01)
    raw = _step_grads(OneShotConfig(**base, clip_grad_value=None))
    clipped = _step_grads(OneShotConfig(**base, clip_grad_value=0.05))
    assert max(p.grad.abs().max().item() for p in raw.values()) > 0.05           # the clip has work to do
    for name, p in clipped.items():
        decay = 0.01 * p.detach() if p.dim() == 4 else torch.zeros_like(p)       # conv weights only
        expected = (raw[name].grad - decay).clamp(-0.05, 0.05) + decay
        assert torch.allclose(p.grad, expected, atol=1e-7), name


def test_clip_gradients_none_leaves_gradients_alone_and_config_checks_the_value():
    p = torch.nn.Parameter(torch.zeros(3))
    p.grad = torch.tensor([-3.0, 0.5, 2.0])
    module = torch.nn.Module()
    module.p = p
    clip_gradients(module, None)
    assert p.grad.tolist() == [-3.0, 0.5, 2.0]
    clip_gradients(module, 1.0)
    assert p.grad.tolist() == [-1.0, 0.5, 1.0]
    with pytest.raises(ValueError, match="clip_grad_value"):
        OneShotConfig(clip_grad_value=0.0)
