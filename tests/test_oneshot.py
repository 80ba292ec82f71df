"""One-shot training: losses, schedule pieces, baselines, and resume == uninterrupted."""
from __future__ import annotations

import math

import pytest
import torch

from mpq.models import create_model
from mpq.method.losses import distillation_loss, qe_weight_at
from mpq.training.recipe import OneShotConfig
from mpq.training.steps import apply_weight_decay
from mpq.training.oneshot import build_supernet, run_meta, train_oneshot, train_step
from mpq.method.supernet import Supernet

TINY = dict(epochs=2, num_random_paths=2, warmup_epochs=0.5, qe_start=0.5, sched_freeze_activations=True)   # ResNet's


def test_distillation_loss_zero_for_equal_logits_and_positive_otherwise():
    a = torch.randn(5, 10)
    assert distillation_loss(a, a).abs() < 1e-6
    assert distillation_loss(a, torch.randn(5, 10)) > 0


def test_qe_weight_ramps_from_start_to_its_weight_at_the_last_step():
    for ramp in ("cosine", "linear"):
        assert qe_weight_at(26, 100, 0.27, 0.1, ramp) == 0.0
        assert qe_weight_at(27, 100, 0.27, 0.1, ramp) == 0.0
        assert qe_weight_at(99, 100, 0.27, 0.1, ramp) == pytest.approx(0.1)      # the weight is reached
        values = [qe_weight_at(s, 100, 0.27, 0.1, ramp) for s in range(100)]
        assert values == sorted(values)
    mid = (27 + 99) / 2
    assert qe_weight_at(int(mid), 100, 0.27, 0.1, "cosine") == pytest.approx(0.05, abs=0.003)
    assert qe_weight_at(40, 100, 0.27, 0.1, "cosine") < qe_weight_at(40, 100, 0.27, 0.1, "linear")
    with pytest.raises(ValueError, match="ramp"):
        qe_weight_at(5, 10, 0.2, 1.0, "step")
    with pytest.raises(ValueError, match="qe_ramp"):
        OneShotConfig(qe_ramp="step")


def _grads(sn):
    return {n: p.grad.clone() for n, p in sn.named_parameters() if p.grad is not None and "step_size" not in n}


def test_quantization_error_is_on_random_paths_only_unless_asked():
    x, y = torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))
    sn = Supernet(create_model("resnet20", width_mult=0.25), (1, 28, 28))
    sn.calibrate(x)
    grads = {}
    for name, qe_max_path, weight in (("off", False, 0.0), ("max-only config", False, 5.0), ("max too", True, 5.0)):
        cfg = OneShotConfig(num_random_paths=0, scheduler=False, idm=False, qe_max_path=qe_max_path)
        sn.zero_grad(set_to_none=True)
        train_step(sn, x, y, cfg, torch.Generator().manual_seed(0), weight)
        grads[name] = _grads(sn)
    # with no random path and the penalty on random paths only, the weight changes nothing
    assert all(torch.equal(grads["off"][n], grads["max-only config"][n]) for n in grads["off"])
    assert any(not torch.allclose(grads["off"][n], grads["max too"][n]) for n in grads["off"])


def test_weight_decay_on_conv_weights_only_unless_asked():
    sn = Supernet(create_model("resnet20", width_mult=0.25), (1, 28, 28))
    for p in sn.parameters():
        p.grad = torch.zeros_like(p)
    apply_weight_decay(sn, 0.5, skip=set())
    from mpq.method.layers import quant_layers
    layers = quant_layers(sn.model)
    convs = [l for l in layers.values() if l.weight.dim() == 4]
    linears = [l for l in layers.values() if l.weight.dim() == 2]
    assert convs and linears
    assert all(torch.allclose(l.weight.grad, 0.5 * l.weight) for l in convs)
    assert all(torch.count_nonzero(l.weight.grad) == 0 for l in linears)
    apply_weight_decay(sn, 0.5, skip={next(iter(layers))}, linear=True)
    assert all(torch.allclose(l.weight.grad, 0.5 * l.weight) for l in linears)
    first = layers[next(iter(layers))]
    assert torch.allclose(first.weight.grad, 0.5 * first.weight)    # skipped: not decayed a second time


class _OneConv(torch.nn.Module):
    """A fixed stem, one searchable 1x1 conv with five output channels (five weights), its BN, a fixed classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = torch.nn.Conv2d(1, 1, 1, bias=False)
        self.conv = torch.nn.Conv2d(1, 5, 1, bias=False)
        self.bn = torch.nn.BatchNorm2d(5)
        self.fc = torch.nn.Linear(5, 2)

    def forward(self, x):
        return self.fc(self.bn(self.conv(self.stem(x))).mean((2, 3)))


def _decay_grad(rule: str, paths: list[int], cancel: bool = True) -> list[float]:
    """The searchable conv's gradient after a step's decay (zero path gradients), weight decay 0.5, the 2-bit
    step size 0.1, so the 2-bit range is [-2 s, 1 s] = [-0.2, 0.1]; ``paths``: the conv's w_bits on each random path."""
    from mpq.training.steps import clip_gradients, correct_2bit_decay, decay_weights

    sn = Supernet(_OneConv(), (1, 4, 4))
    conv = sn.model.conv
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([-0.5, -0.2, 0.05, 0.1, 0.3]).view(5, 1, 1, 1))
        conv.weight_quantizer.step_size["2"].fill_(0.1)
    for p in sn.parameters():
        p.grad = torch.zeros_like(p)
    cfg = OneShotConfig(weight_decay=0.5, cancel_2bit_decay=cancel, cancel_2bit_decay_rule=rule)
    configs = [{"conv": (w, 4)} for w in paths]
    correct_2bit_decay(sn, cfg, configs)          # the order of a step: correction, clip, decay
    clip_gradients(sn, cfg.clip_grad_value)
    decay_weights(sn, cfg, configs)
    return [round(v, 6) for v in conv.weight.grad.flatten().tolist()]


@pytest.mark.timeout(10)
def test_the_2bit_decay_correction_spares_only_in_range_weights():
    """Official rule: per 2-bit path, the decay 0.5 w of the weights inside [-0.2, 0.1] (ends included) is taken
    back; -0.5 and 0.3 keep theirs. By hand: decay 0.5 w = [-0.25, -0.1, 0.025, 0.05, 0.15]."""
    decay = [-0.25, -0.1, 0.025, 0.05, 0.15]
    assert _decay_grad("per_path_in_range", [4]) == decay                         # no 2-bit path: plain decay
    assert _decay_grad("per_path_in_range", [2]) == [-0.25, 0.0, 0.0, 0.0, 0.15]
    assert _decay_grad("per_path_in_range", [2, 3, 2]) == [-0.25, 0.1, -0.025, -0.05, 0.15]   # twice: growth
    assert _decay_grad("per_step_layer", [2, 2]) == [0.0] * 5                      # the whole layer, once a step
    assert _decay_grad("per_path_in_range", [2], cancel=False) == decay
    assert OneShotConfig().cancel_2bit_decay_rule == "per_path_in_range"
    with pytest.raises(ValueError, match="cancel_2bit_decay_rule"):
        OneShotConfig(cancel_2bit_decay_rule="per_layer")


def test_baseline_is_a_single_candidate_max_path_only():
    base = OneShotConfig().baseline(3)
    assert base.w_bit_choices == (3,) and base.a_bit_choices == (3,) and base.num_random_paths == 0
    spec = base.supernet_spec()
    assert spec.depthwise_min_bits == 3 and spec.w_bit_choices == (3,)
    with pytest.raises(ValueError, match="num_random_paths"):
        OneShotConfig(num_random_paths=-1)


def _run(tiny_splits, tmp_path, name, stop_after=None, resume_from=None):
    torch.manual_seed(0)
    cfg = OneShotConfig(**TINY)
    sn = build_supernet(create_model("resnet20", width_mult=0.25), cfg.supernet_spec(), tiny_splits.calib, (1, 28, 28))
    ckpt = resume_from or tmp_path / f"{name}.pt"
    return train_oneshot(sn, tiny_splits.train.subset(torch.arange(128)), cfg, batch_size=32, pad=2, flip=True,
                         seed=0, device=torch.device("cpu"), checkpoint=ckpt, progress=False,
                         stop_after_epoch=stop_after)


def test_training_moves_weights_and_resume_equals_uninterrupted(tiny_splits, tmp_path):
    full = _run(tiny_splits, tmp_path, "full")
    first = _run(tiny_splits, tmp_path, "part", stop_after=1)
    assert first.history.epoch == [1]
    resumed = _run(tiny_splits, tmp_path, "part", resume_from=tmp_path / "part.pt")
    assert resumed.history.epoch == [1, 2]
    assert math.isnan(resumed.history.seconds[0]) and resumed.history.seconds[1] > 0   # wall times are not stored
    for model in ("supernet", "ema"):
        a, b = getattr(full, model).state_dict(), getattr(resumed, model).state_dict()
        assert a.keys() == b.keys()
        for k in a:
            assert (a[k] == b[k]) if k.endswith("_extra_state") else torch.equal(a[k], b[k]), f"{model}: {k}"
    torch.manual_seed(0)
    init = build_supernet(create_model("resnet20", width_mult=0.25), OneShotConfig().supernet_spec(),
                          tiny_splits.calib, (1, 28, 28))
    name = "model.stages.1.0.conv1.weight"
    assert not torch.equal(init.state_dict()[name], full.supernet.state_dict()[name])


def _short(tiny_splits, tmp_path, name, images=128, **overrides):
    torch.manual_seed(0)
    cfg = OneShotConfig(**{**TINY, "epochs": 1, **overrides})
    sn = build_supernet(create_model("resnet20", width_mult=0.25), cfg.supernet_spec(), tiny_splits.calib, (1, 28, 28))
    train = tiny_splits.train.subset(torch.arange(images))
    return train_oneshot(sn, train, cfg, batch_size=32, pad=2, flip=True, seed=0, device=torch.device("cpu"),
                         checkpoint=tmp_path / f"{name}.pt", progress=False,
                         meta=run_meta("resnet20", 0.25, tiny_splits, train))


def _same_weights(a, b) -> bool:
    sa, sb = a.supernet.state_dict(), b.supernet.state_dict()
    return all((sa[k] == sb[k]) if k.endswith("_extra_state") else torch.equal(sa[k], sb[k]) for k in sa)


def test_scheduler_and_idm_switch_off_exactly(tiny_splits, tmp_path):
    """A scheduler never called and an IDM of weight 0 are the plain method, bit for bit."""
    short = lambda name, **kw: _short(tiny_splits, tmp_path, name, images=64, **kw)      # two steps each
    plain = short("plain", scheduler=False, idm=False)
    assert plain.frozen == []
    assert _same_weights(plain, short("never", scheduler=True, sched_warmup=1.0, idm=False))
    assert _same_weights(plain, short("zero", scheduler=False, idm=True, idm_weight=0.0))
    assert not _same_weights(plain, short("idm", scheduler=False, idm=True, idm_weight=1.0))


@pytest.mark.timeout(60)
def test_scheduler_decision_is_saved_and_bounds_the_search(tiny_splits, tmp_path):
    from mpq.search.evaluation import search_space
    from mpq.training.oneshot import checkpoint_candidates, load_supernet
    from mpq.method.scheduler import freeze_ratio

    run = _short(tiny_splits, tmp_path, "sched", scheduler=True, sched_warmup=0.0, sched_every=0.5,
                 sched_late_from=1.0, sched_min_steps=1, idm=True)
    n = len(run.ema.searchable)
    # 4 steps, calls at steps 0 and 2: the last decision froze int(ratio(0.5) * n) layers (a floor, as official)
    assert len(run.frozen) == int(freeze_ratio(0.5) * n) and set(run.frozen) <= set(run.ema.searchable)
    loaded = load_supernet(tmp_path / "sched.pt")
    cands = checkpoint_candidates(tmp_path / "sched.pt", loaded)
    assert cands == run.candidates()
    space = search_space(loaded, cands)
    for name in loaded.searchable:       # ResNet: frozen layers lose W2 and A2, and keep both out of the search
        assert (min(space.w_choices[name]) > 2) == (name in run.frozen) == (min(space.a_choices[name]) > 2)


@pytest.mark.timeout(60)
def test_a_scheduler_with_no_rule_for_what_freezing_takes_is_refused(tiny_splits, tmp_path):
    with pytest.raises(ValueError, match="sched_freeze_activations is null"):
        _short(tiny_splits, tmp_path, "unresolved", images=64, sched_freeze_activations=None)
    plain = _short(tiny_splits, tmp_path, "plain", images=64, scheduler=False, sched_freeze_activations=None)
    assert plain.frozen == [] and plain.candidates() == plain.ema.choices      # no call, nothing to resolve


def test_ema_update_equals_averaged_model():
    """The fast EMA update gives AveragedModel's floats bit for bit (first step a copy, then lerps)."""
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    from mpq.training.oneshot import EmaUpdate

    torch.manual_seed(0)
    sn = Supernet(create_model("resnet20", width_mult=0.25), (1, 28, 28), OneShotConfig().supernet_spec())
    reference = AveragedModel(sn, multi_avg_fn=get_ema_multi_avg_fn(0.9), use_buffers=True)
    fast_ema = AveragedModel(sn, multi_avg_fn=get_ema_multi_avg_fn(0.9), use_buffers=True)
    update = EmaUpdate(fast_ema, sn, 0.9)
    for _ in range(4):
        with torch.no_grad():
            for p in sn.parameters():
                p.add_(torch.randn_like(p))
            for name, b in sn.named_buffers():
                if b.is_floating_point():
                    b.add_(1.0)
        reference.update_parameters(sn)
        update()
    assert int(fast_ema.n_averaged) == int(reference.n_averaged) == 4
    for (name, a), b in zip(reference.module.state_dict().items(), fast_ema.module.state_dict().values()):
        if torch.is_tensor(a) and a.is_floating_point():
            assert torch.equal(a, b), name


def test_ema_update_built_on_a_resumed_ema_lerps_from_the_first_step():
    """A resumed run builds EmaUpdate on an EMA that has averaged before: its first update is a lerp, not a copy."""
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    from mpq.training.oneshot import EmaUpdate

    sn = Supernet(create_model("resnet20", width_mult=0.25), (1, 28, 28), OneShotConfig().supernet_spec())
    ema = AveragedModel(sn, multi_avg_fn=get_ema_multi_avg_fn(0.9), use_buffers=True)
    ema.n_averaged.fill_(3)
    before = [p.detach().clone() for p in ema.module.parameters()]
    with torch.no_grad():
        for p in sn.parameters():
            p.add_(1.0)
    EmaUpdate(ema, sn, 0.9)()
    for old, new, target in zip(before, ema.module.parameters(), sn.parameters()):
        assert torch.equal(new, torch.lerp(old, target, 0.1))
    assert int(ema.n_averaged) == 4


def test_train_step_reports_the_losses_of_its_paths(tiny_splits):
    """The step's numbers, gathered in one transfer, are the max path's loss and the random paths' mean."""
    torch.manual_seed(0)
    cfg = OneShotConfig(num_random_paths=2, scheduler=False)
    sn = build_supernet(create_model("resnet20", width_mult=0.25), cfg.supernet_spec(), tiny_splits.calib, (1, 28, 28))
    x = tiny_splits.train.images[:16].float().div(255).contiguous(memory_format=torch.channels_last)
    y = tiny_splits.train.labels[:16]
    stats = train_step(sn, x, y, cfg, torch.Generator().manual_seed(0), qe_weight=0.0)
    assert set(stats) == {"loss_max", "loss_rand", "idm"}
    sn.set_config(sn.max_config())
    with torch.no_grad():              # training mode: batch statistics, as in the step (no weight has moved)
        loss_max = torch.nn.functional.cross_entropy(sn(x), y).item()
    assert stats["loss_max"] == pytest.approx(loss_max, rel=1e-6)
    assert stats["loss_rand"] > 0 and stats["idm"] >= 0


def test_a_rerun_writes_the_same_checkpoint_bytes(tiny_splits, tmp_path):
    """No wall times and no file-name-dependent record names: DVC skips every stage after a reproduced one."""
    _short(tiny_splits, tmp_path, "a", images=64)
    _short(tiny_splits, tmp_path, "b", images=64)
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()


def _logged(tiny_splits, tmp_path, name, sched_log=None, epochs=2, stop_after=None):
    torch.manual_seed(0)
    cfg = OneShotConfig(**{**TINY, "epochs": epochs, "scheduler": True, "sched_warmup": 0.0, "sched_every": 0.25,
                           "sched_late_from": 1.0, "sched_min_steps": 1})
    sn = build_supernet(create_model("resnet20", width_mult=0.25), cfg.supernet_spec(), tiny_splits.calib, (1, 28, 28))
    train = tiny_splits.train.subset(torch.arange(64))
    return train_oneshot(sn, train, cfg, batch_size=32, pad=2, flip=True, seed=0, device=torch.device("cpu"),
                         checkpoint=tmp_path / f"{name}.pt", progress=False, stop_after_epoch=stop_after,
                         meta=run_meta("resnet20", 0.25, tiny_splits, train), sched_log=sched_log)


@pytest.mark.timeout(120)
def test_scheduler_log_records_every_call_changes_nothing_else_and_survives_a_resume(tiny_splits, tmp_path):
    from mpq.method.scheduler import SchedulerLog, decide_frozen, layer_scores
    from mpq.training.checkpoint import load_checkpoint

    plain = _logged(tiny_splits, tmp_path, "plain")                                 # 2 epochs x 2 steps
    log = SchedulerLog()
    logged = _logged(tiny_splits, tmp_path, "logged", log)
    assert _same_weights(plain, logged) and plain.frozen == logged.frozen
    assert "sched_log" not in load_checkpoint(tmp_path / "plain.pt")            # unasked: the same checkpoint keys
    assert [c.step for c in log.calls] == [0, 1, 2, 3] and list(log.calls[-1].frozen) == logged.frozen
    for call in log.calls:                      # each decision is the one its recorded scores give
        assert list(call.frozen) == decide_frozen(call.scores, call.ratio)
        assert all(pair == (3, 3) for pair in call.frozen_lowest.values())    # ResNet: W2 and A2 both gone
        assert list(call.scores) == list(logged.ema.searchable) and list(call.full_scores) == list(call.scores)
    assert log.as_dict(4)["summary"]["frozen_lowest_points"] == [[3, 3]]
    # a frozen layer is scored without its lowest candidate, so its score differs from its full-list one
    first = set(log.calls[0].frozen)
    assert first and all(log.calls[1].scores[n] != log.calls[1].full_scores[n] for n in first)
    assert all(log.calls[1].scores[n] == log.calls[1].full_scores[n] for n in log.calls[1].scores if n not in first)
    assert load_checkpoint(tmp_path / "logged.pt")["sched_log"] == log.state()
    # interrupted after epoch 1 and resumed with a fresh log: the calls of epoch 1 come back from the checkpoint
    _logged(tiny_splits, tmp_path, "part", SchedulerLog(), stop_after=1)
    resumed_log = SchedulerLog()
    _logged(tiny_splits, tmp_path, "part", resumed_log)
    assert resumed_log.state() == log.state()


def test_a_checkpoint_from_before_the_official_rules_reads_as_it_was_trained():
    """A checkpoint whose config lacks the keys of issue 45 was trained with the rules before them."""
    from dataclasses import asdict

    from mpq.training.oneshot import EARLIER_RECIPE, stored_recipe

    old = {k: v for k, v in asdict(OneShotConfig()).items() if k not in EARLIER_RECIPE}
    recipe = stored_recipe({"config": old})
    assert (recipe.cancel_2bit_decay_rule, recipe.depthwise_floor_activations, recipe.sched_count_rounding,
            recipe.sched_freeze_activations) == ("per_step_layer", False, "round", False)
    assert stored_recipe({"config": asdict(OneShotConfig().for_model("resnet20"))}).sched_freeze_activations is True
