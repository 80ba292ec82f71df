"""The tensor-indexed one-shot step (mpq.training.graphed) computes what oneshot.train_step computes.

On a CPU the step runs without a graph (capture=False): the same code a CUDA graph records, so these tests
cover everything but the recording. With a GPU present, the last test records and replays it.
"""
from __future__ import annotations

import copy

import pytest
import torch

from mpq.training.graphed import GraphedStep
from mpq.models import create_model
from mpq.training.hardware import place
from mpq.training.recipe import OneShotConfig
from mpq.training.oneshot import train_step
from mpq.method.scheduler import apply_decision
from mpq.method.supernet import Supernet

# every loss term on: KD, IDM, the quantization-error penalty (max path too), 2-bit decay cancelling
CFG = OneShotConfig(num_random_paths=3, idm=True, idm_weight=0.1, qe_max_path=True, lr=0.01, step_lr=0.001)


def _supernet(device: str = "cpu", model: str = "resnet20") -> Supernet:
    sn = Supernet(create_model(model, width_mult=0.25), (1, 28, 28), CFG.supernet_spec())
    sn.calibrate(torch.randn(32, 1, 28, 28))
    place(sn, device)             # channels_last, and on AVX2-only CPUs the guard against oneDNN's hang
    return sn.train()


def _batch(n: int, device: str = "cpu"):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(n, 1, 28, 28, generator=gen).contiguous(memory_format=torch.channels_last)
    return x.to(device), torch.randint(0, 10, (n,), generator=gen).to(device)


def _run(sn: Supernet, step, steps: int, candidates=None, qe_weights=(0.0, 0.05, 0.1)) -> list[dict]:
    """``steps`` steps with new random paths each, gradients kept, weights left alone: an optimiser would let
    Adam turn rounding noise in near-zero step-size gradients into whole steps of its learning rate, and the
    two runs would part for reasons that are not the step's (the training test below covers the optimisers).
    ``step(x, y, gen, qe_weight, candidates)`` is train_step or a GraphedStep."""
    gen, out = torch.Generator().manual_seed(3), []
    for i in range(steps):
        x, y = _batch(16, next(sn.parameters()).device.type)
        sn.zero_grad(set_to_none=True)
        out.append(step(x, y, gen, qe_weights[i % len(qe_weights)], candidates))
        out[-1]["grads"] = {n: None if p.grad is None else p.grad.clone() for n, p in sn.named_parameters()}
    return out


def _eager(sn: Supernet):
    return lambda x, y, gen, qe, cands: train_step(sn, x, y, CFG, gen, qe, None, cands)


@pytest.mark.parametrize("model,frozen", [("resnet20", False), ("resnet20", True), ("mobilenetv2_28", True)])
def test_graphed_step_equals_train_step(model, frozen):
    """Same losses and gradients (to summation order: IDM), same unused rows, same BN statistics after three steps.
    MobileNetV2 brings depthwise weights (size-1 dims, whose strides decide a conv's output layout) and signed
    activation ranges."""
    a = _supernet(model=model)
    b = copy.deepcopy(a)
    # the scheduler's candidates: a third of the layers without their lowest weight bit-width (IDM moves up)
    # (and, for ResNet, their lowest activation bit-width: the family's rule)
    rule = CFG.for_model(model).sched_freeze_activations
    cands = apply_decision(a.choices, list(a.searchable)[::3], activations=rule) if frozen else None
    eager = _run(a, _eager(a), 3, cands)
    graphed = _run(b, GraphedStep(b, CFG, capture=False), 3, cands)
    for e, g in zip(eager, graphed):
        assert e["idm"] > 0
        for key in ("loss_max", "loss_rand", "idm"):
            assert g[key] == pytest.approx(e[key], rel=1e-6, abs=1e-7)
        for name, ge in e["grads"].items():
            gg = g["grads"][name]
            assert (ge is None) == (gg is None), name                    # unused rows get no gradient
            if ge is not None:
                torch.testing.assert_close(gg, ge, rtol=1e-4, atol=1e-5, msg=name)   # summation order only
    sa, sb = a.state_dict(), b.state_dict()
    for name in sa:                                                       # weights, steps and BN statistics
        if isinstance(sa[name], torch.Tensor):
            torch.testing.assert_close(sb[name], sa[name], rtol=1e-5, atol=1e-6, msg=name)


def test_graphed_rows_are_the_modules_own_parameters():
    sn = _supernet()
    params = dict(sn.named_parameters())
    before = {n: p.detach().clone() for n, p in params.items()}
    step = GraphedStep(sn, CFG, capture=False)
    # the modules' parameters and buffers are views of the stacks: loading a state_dict reaches the stacks;
    # they stay the same objects, so optimisers and the EMA built before keep working on them
    assert all(p is params[n] for n, p in sn.named_parameters()) and len(params) == len(list(sn.parameters()))
    assert all(torch.equal(p, before[n]) for n, p in sn.named_parameters())
    rows = step.w_rows[0]
    with torch.no_grad():
        rows.params[1].add_(1.0)
    assert rows.steps[1] == rows.params[1]
    state = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in sn.state_dict().items()}
    state[next(k for k in state if k.endswith("running_mean") and ".bns.w" in k)].fill_(7.0)
    sn.load_state_dict(state)
    assert any(bool((r.mean == 7.0).all(dim=1).any()) for r in step.bn_rows.values())


def test_graphed_step_rejects_what_it_cannot_record():
    sn = Supernet(create_model("resnet20", width_mult=0.25), (1, 28, 28), spec=CFG.supernet_spec())
    sn.calibrate(torch.randn(8, 1, 28, 28))
    with pytest.raises(ValueError, match="CUDA device"):
        GraphedStep(sn, CFG, capture=True)
    scaled = OneShotConfig(grad_scaling=True)
    sn2 = Supernet(create_model("resnet20", width_mult=0.25), (1, 28, 28), spec=scaled.supernet_spec())
    sn2.calibrate(torch.randn(8, 1, 28, 28))
    with pytest.raises(ValueError, match="gradient scaling"):
        GraphedStep(sn2, scaled, capture=False)
    with pytest.raises(ValueError, match="sync gradients"):
        from mpq.training.oneshot import train_oneshot
        data = None                                   # refused before any data is read
        train_oneshot(sn, data, CFG, batch_size=8, pad=0, flip=False, seed=0, device=torch.device("cpu"),
                      graphed=True, grad_sync=lambda params: None)
    step = GraphedStep(sn, CFG, capture=False)
    x, y = _batch(8)
    step(x, y, torch.Generator().manual_seed(0), 0.0)
    with pytest.raises(ValueError, match="batches of"):
        step(x[:4], y[:4], torch.Generator().manual_seed(0), 0.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="a CUDA graph needs a GPU")
@pytest.mark.parametrize("model", ["resnet20", "mobilenetv2_28"])
def test_recorded_step_equals_train_step_on_a_gpu(model):
    """Recorded on the first step, replayed with new paths on the next ones. GPU kernels are not deterministic,
    so gradients are compared by relative norm: a wrong row or range would be off by tens of percent."""
    a = _supernet("cuda", model)
    b = copy.deepcopy(a)
    eager = _run(a, _eager(a), 4)
    graphed = _run(b, GraphedStep(b, CFG), 4)
    for e, g in zip(eager, graphed):
        for key in ("loss_max", "loss_rand", "idm"):
            assert g[key] == pytest.approx(e[key], rel=1e-5, abs=1e-7), key
        for name, ge in e["grads"].items():
            assert (ge is None) == (g["grads"][name] is None), name
            if ge is not None:
                assert float((g["grads"][name] - ge).norm()) <= 1e-3 * float(ge.norm()) + 1e-6, name


def _train(tiny_splits, path, graphed: bool, stop_after=None):
    from mpq.training.oneshot import build_supernet, train_oneshot
    torch.manual_seed(0)
    # IDM off: its masked sum changes the memory layout of some accumulated gradients, so later sums round
    # differently, and a scheduler decision near a tie can then flip (the step tests above cover IDM)
    cfg = OneShotConfig(epochs=2, num_random_paths=2, warmup_epochs=0.5, qe_start=0.3, sched_warmup=0.2,
                        sched_every=0.1, idm=False).for_model("resnet20")
    sn = build_supernet(create_model("resnet20", width_mult=0.25), cfg.supernet_spec(), tiny_splits.calib, (1, 28, 28))
    return train_oneshot(sn, tiny_splits.train.subset(torch.arange(128)), cfg, batch_size=32, pad=2, flip=True, seed=0,
                         device=torch.device("cpu"), checkpoint=path, progress=False, graphed=graphed,
                         stop_after_epoch=stop_after)


def test_training_with_the_tensor_indexed_step_equals_eager_training_and_resumes(tiny_splits, tmp_path):
    """Scheduler, distillation, the quantization-error ramp, both optimisers and the EMA: bit for bit on a CPU,
    resumed or not."""
    eager = _train(tiny_splits, tmp_path / "eager.pt", graphed=False)
    graphed = _train(tiny_splits, tmp_path / "graphed.pt", graphed=True)
    _train(tiny_splits, tmp_path / "part.pt", graphed=True, stop_after=1)
    resumed = _train(tiny_splits, tmp_path / "part.pt", graphed=True)
    assert eager.frozen == graphed.frozen == resumed.frozen and eager.frozen
    assert graphed.history.loss == eager.history.loss
    for which in ("supernet", "ema"):
        e, g, r = (getattr(run, which).state_dict() for run in (eager, graphed, resumed))
        for name in e:
            if isinstance(e[name], torch.Tensor):
                assert torch.equal(g[name], e[name]), f"{which} {name}"
                assert torch.equal(r[name], e[name]), f"resumed {which} {name}"
