"""One-shot weight-coupled training of the bit-width supernet (claim C1; docs/method.md section 2).

Each step: (1) the max path (every searchable layer at its highest candidate) with cross-entropy; its
detached logits are the teacher. (2) ``num_random_paths`` random paths, each layer drawing w_bits and
a_bits uniformly from its current candidates, with ``(1-kd)*CE + kd*KL(teacher || student)``. Gradients
of all paths accumulate, then one optimiser step: SGD (Nesterov, warm-up + cosine) for weights, BN and
biases, Adam for the LSQ step sizes. An EMA copy of the supernet is what gets evaluated and searched.

The loss terms live in ``mpq.method.losses``; the bit-width scheduler (C3) in ``mpq.method.scheduler``, called here
every few steps to take the lowest weight candidate (and, for ResNet models, the lowest activation candidate:
``sched_freeze_activations``) away from the most turbulent layers; information distortion mitigation (C4) is
added on every random path. Three details follow the official code, each a named parameter: the
quantization-error penalty on the random paths only, ramped in along a cosine from 27% of training (``qe_*``);
weight decay on conv weights only (``decay_linear``); and the 2-bit decay correction (``cancel_2bit_decay``,
``cancel_2bit_decay_rule``: once per random path that samples a conv at 2 bits, the decay of the weights inside
its 2-bit range is taken back; docs/method.md sections 2 and 7).

The same function trains a uniform fixed-precision LSQ baseline: a supernet whose only candidate is
(k, k) and ``num_random_paths=0`` is plain LSQ at WkAk (``baseline_spec``).
"""
from __future__ import annotations

import itertools
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping, Protocol, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm.std import tqdm

from mpq.training.recipe import OneShotConfig
from mpq.training.checkpoint import (CheckpointError, TrainingInterrupted, check_matches, describe_tensors,
                                     load_checkpoint, nonfinite_tensors, require_keys, save_checkpoint, stored_config)
from mpq.data.datasets import ImageSet, Splits, augment, batches
from mpq.training.hardware import place
from mpq.method.losses import (capture_bn_outputs, distillation_loss, idm_loss, lowest_bit_layers, qe_weight_at,
                               quantization_error)
from mpq.method.scheduler import (Choices, SchedulerConfig, SchedulerLog, apply_decision, call_steps, decide_frozen,
                                  decision_scores, freeze_ratio, score_layers, turbulence_table)
from mpq.method.supernet import Supernet, SupernetSpec
from mpq.training.steps import clip_gradients, correct_2bit_decay, decay_weights, step_stats
from mpq.training.graphed import GraphedStep
from mpq.training.fp import History, TrainingDiverged, full_batches, to_device, warmup_cosine

log = logging.getLogger(__name__)

# no wall times: a checkpoint is a function of its inputs, byte for byte (History.as_dict(times=False))
CHECKPOINT_KEYS = ("supernet", "ema", "sgd", "adam", "sched", "sched_steps", "generator", "history", "epoch",
                   "config", "meta", "frozen")
# what only an unfinished run needs to go on: a finished checkpoint drops it (about a third of the file), so the
# repository's DVC store keeps weights, EMA weights, the scheduler's decision and record, and the history
RESUME_KEYS = ("sgd", "adam", "sched", "sched_steps", "generator")
# what loading, searching and exporting a trained supernet read: a released supernet (mpq.deploy.release) holds only these
RELEASE_KEYS = ("ema", "epoch", "config", "meta", "frozen")


def optimizers(supernet: Supernet, cfg: OneShotConfig) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
    """SGD for weights/BN/biases (decay applied by hand, see ``apply_weight_decay``), Adam for step sizes."""
    steps = [p for n, p in supernet.named_parameters() if "step_size" in n]
    rest = [p for n, p in supernet.named_parameters() if "step_size" not in n]
    sgd = torch.optim.SGD(rest, lr=cfg.lr, momentum=cfg.momentum, nesterov=True, weight_decay=0.0)
    adam = torch.optim.Adam(steps, lr=cfg.step_lr)
    return sgd, adam


class GradSync(Protocol):
    """Averages gradients (after every step) and buffers (after every epoch) across processes."""

    def __call__(self, params: Iterable[nn.Parameter]) -> None: ...

    def sync_buffers(self, module: nn.Module) -> None: ...


def train_step(supernet: Supernet, x: Tensor, y: Tensor, cfg: OneShotConfig, gen: torch.Generator,
               qe_weight: float, grad_sync: GradSync | None = None,
               candidates: Mapping[str, Choices] | None = None) -> dict[str, float]:
    """Max path + random paths on one batch; gradients accumulated (and synced across processes).

    ``candidates``: each searchable layer's current (weight, activation) candidates, as the scheduler
    left them (None: the supernet's full lists); random paths draw from them, and IDM aligns the layers
    at their lowest current weight candidate. ``qe_weight``: the quantization-error term's weight at this
    step (``losses.qe_weight_at``), added on the random paths (and the max path with ``cfg.qe_max_path``).
    """
    cands = candidates or supernet.choices
    use_idm = cfg.idm and cfg.idm_weight > 0 and cfg.num_random_paths > 0
    bns = {name: supernet.model.get_submodule(bn) for name, bn in supernet.bn_of.items()} if use_idm else {}
    max_cfg = supernet.max_config()
    supernet.set_config(max_cfg)
    with capture_bn_outputs(bns) as teacher_features:
        logits = supernet(x)
    teacher_features = {n: f.detach() for n, f in teacher_features.items()}
    loss = F.cross_entropy(logits, y)
    if qe_weight > 0 and cfg.qe_max_path:
        loss = loss + qe_weight * quantization_error(supernet, cands)
    loss.backward()
    teacher = logits.detach()
    loss_max = loss.detach()
    random_configs, rand_losses, idm_terms = [], [], []
    for _ in range(cfg.num_random_paths):
        bit_cfg = supernet.sample_config(gen, candidates)
        random_configs.append(bit_cfg)
        supernet.set_config(bit_cfg)
        with capture_bn_outputs(bns) as features:
            out = supernet(x)
        loss = (1 - cfg.kd_weight) * F.cross_entropy(out, y) + cfg.kd_weight * distillation_loss(out, teacher, cfg.kd_temperature)
        if qe_weight > 0:
            loss = loss + qe_weight * quantization_error(supernet, cands)
        if use_idm:
            idm = idm_loss(features, teacher_features, [n for n in lowest_bit_layers(bit_cfg, cands) if n in bns])
            loss = loss + cfg.idm_weight * idm
            idm_terms.append(idm.detach())
        loss.backward()
        rand_losses.append(loss.detach())
    if grad_sync is not None:
        grad_sync(supernet.parameters())
    correct_2bit_decay(supernet, cfg, random_configs)
    clip_gradients(supernet, cfg.clip_grad_value)
    decay_weights(supernet, cfg, random_configs)
    # the step's numbers reach the host together: one device sync per step, not one per path
    return step_stats(torch.stack([loss_max, *rand_losses, *idm_terms]).tolist(), len(rand_losses))


class EmaUpdate:
    """``AveragedModel.update_parameters`` for an EMA (``get_ema_multi_avg_fn``), without its per-step Python.

    The float arithmetic is the same (one ``torch._foreach_lerp_`` towards the model by ``1 - decay``, after a
    first step that copies), so the EMA's floats equal AveragedModel's bit for bit; the tensor lists are built
    once instead of every step. Non-float buffers (BN batch counters, quantizer flags) are copied, where
    AveragedModel would average and truncate them; nothing reads the EMA's counters (BN momentum is fixed, and
    recalibration resets them). Measured on a ResNet-20 x0.5 supernet (2,311 float tensors, every switchable
    BN copy included, and 565 others): 13-19 ms per step for AveragedModel, 1 ms here, on a 2-core CPU.
    """

    def __init__(self, ema: AveragedModel, model: nn.Module, decay: float) -> None:
        pairs = list(zip(itertools.chain(ema.module.parameters(), ema.module.buffers()),
                         itertools.chain(model.parameters(), model.buffers()), strict=True))
        self.ema, self.weight = ema, 1.0 - decay
        self.first = int(ema.n_averaged) == 0      # read once here: per step it would sync a GPU
        self.floats = ([a.detach() for a, b in pairs if a.is_floating_point()],
                       [b.detach() for a, b in pairs if a.is_floating_point()])
        self.others = ([a.detach() for a, b in pairs if not a.is_floating_point()],
                       [b.detach() for a, b in pairs if not a.is_floating_point()])

    @torch.no_grad()
    def __call__(self) -> None:
        if self.first:
            torch._foreach_copy_(self.floats[0], self.floats[1])
            self.first = False
        else:
            torch._foreach_lerp_(self.floats[0], self.floats[1], self.weight)
        torch._foreach_copy_(self.others[0], self.others[1])
        self.ema.n_averaged += 1


def schedule(supernet: Supernet, candidates: Mapping[str, Choices], progress: float, cfg: SchedulerConfig,
             sched_log: SchedulerLog | None = None, step: int = 0) -> list[str]:
    """One scheduler call: measure turbulence, score each layer over its current candidates (or, with
    ``cfg.score_candidates`` "full", over its full list), decide which layers to freeze.

    With ``sched_log``, the call is recorded (``step``, the ratio, the decision, the scores it used, and every layer's
    score over its full candidate list)."""
    table = turbulence_table(supernet, cfg.band)
    full_scores = score_layers(table, supernet.choices)
    scores = decision_scores(table, supernet.choices, candidates, cfg.score_candidates)
    ratio = freeze_ratio(progress, cfg.ratio_start, cfg.ratio_end)
    frozen = decide_frozen(scores, ratio, cfg.count_rounding)
    if sched_log is not None:
        sched_log.record(step, ratio, frozen, scores, full_scores,
                         apply_decision(supernet.choices, frozen, activations=cfg.freeze_activations))
    return frozen


@dataclass
class OneShotRun:
    """What training returns: the EMA supernet (evaluate and search this one), the raw one, the record."""

    ema: Supernet
    supernet: Supernet
    history: History
    seconds: float               # wall time of the epochs this call trained (a resumed run: since the resume)
    frozen: list[str]            # the scheduler's last decision: layers without their lowest weight candidate
    freeze_activations: bool     # ... and without their lowest activation candidate (oneshot.sched_freeze_activations)

    def candidates(self) -> dict[str, Choices]:
        """The search space the scheduler leaves: each layer's candidates after its last decision."""
        return apply_decision(self.ema.choices, self.frozen, activations=self.freeze_activations)


def _look_at(cfg: OneShotConfig) -> str:
    return (f"lower oneshot.lr (now {cfg.lr}) or oneshot.step_lr (now {cfg.step_lr}), or check "
            f"oneshot.kd_temperature (now {cfg.kd_temperature}) and oneshot.weight_decay (now {cfg.weight_decay})")


def _kept(checkpoint: str | Path | None, saved: int | None, epochs: int) -> str:
    if checkpoint is None:
        return "this training keeps no checkpoint"
    if saved is None:
        return f"no checkpoint was written ({checkpoint} does not exist)"
    return f"{checkpoint} keeps epoch {saved} of {epochs}, the last with finite weights"


def diverged_message(cfg: OneShotConfig, stats: Mapping[str, float], step: int, epoch: int,
                     checkpoint: str | Path | None, saved: int | None) -> str:
    """What ``train_oneshot`` says when a step's loss is not finite: which loss, when, the settings to look at."""
    which = [f"{name} {stats[key]}" for key, name in (("loss_max", "max-path loss"), ("loss_rand", "random-path loss"),
                                                      ("idm", "IDM term")) if not math.isfinite(stats[key])]
    return (f"one-shot training diverged: {', '.join(which)} at step {step + 1} (epoch {epoch + 1} of {cfg.epochs}); "
            f"{_look_at(cfg)}; {_kept(checkpoint, saved, cfg.epochs)}")


def train_oneshot(supernet: Supernet, train: ImageSet, cfg: OneShotConfig, *, batch_size: int, pad: int, flip: bool,
                  seed: int, device: torch.device, checkpoint: str | Path | None = None, meta: dict | None = None,
                  progress: bool = True, shard: tuple[int, int] | None = None, grad_sync: GradSync | None = None,
                  stop_after_epoch: int | None = None,
                  on_step: Callable[[int, int, Supernet], None] | None = None,
                  graphed: bool | None = None, stop_on_nonfinite: bool = True,
                  sched_log: SchedulerLog | None = None, keep_weights: bool = True) -> OneShotRun:
    """Train ``supernet`` (already calibrated) one-shot; resumable from ``checkpoint``.

    The finished checkpoint keeps the weights, the EMA weights, the scheduler's decision and record and the
    history, but no optimizer or generator state (``RESUME_KEYS``); ``keep_weights=False`` drops the trained
    (non-EMA) weights from it too, for runs whose readers only evaluate and search the EMA copy (the ablation's).

    A checkpoint is written atomically after every epoch with all state (weights, EMA, optimisers,
    schedules, random generator), so a resumed run equals an uninterrupted one in every stored value (the files
    need not match byte for byte: a resumed run's was 64 bytes longer). It stores no wall times, so a resumed
    run's ``seconds`` (and ``history.seconds``) count only the epochs it trained. ``stop_after_epoch``
    stops early (as an interruption would); ``meta`` is stored alongside (model name, width, ...).

    Data parallel (``mpq.training.distributed``): every process draws the same global batch, augmentation and
    random paths from the same seeded generator and keeps the slice ``shard = (rank, world_size)`` of the
    batch; ``grad_sync`` averages the accumulated gradients once per step, and only rank 0 writes.

    ``on_step(step, total_steps, supernet)`` is called after every optimiser step (0-based step), e.g.
    with a ``scheduler.OscillationMonitor``; it must not change the supernet.

    ``graphed`` (default: on a CUDA device, single process, without LSQ gradient scaling) runs each step as
    one replayed CUDA graph (``mpq.training.graphed.GraphedStep``: the same losses and gradients, far fewer kernel
    launches from the host).

    Each checkpoint says whether training is ``finished`` (its last epoch done; ``training_progress``). A step
    whose loss is not finite (read from the numbers each step already brings to the host), or an epoch that
    leaves a weight non-finite (checked once, before its checkpoint is written), stops training with
    ``TrainingDiverged`` naming the settings to look at; the checkpoint keeps the last finite epoch.
    ``stop_on_nonfinite=False`` trains on (a study that records and counts such runs, e.g. a learning-rate
    grid) but still writes no checkpoint with non-finite weights. Ctrl-C raises ``TrainingInterrupted``
    naming the last complete checkpoint.

    ``sched_log`` (a ``scheduler.SchedulerLog``) records every scheduler call (step, decision, scores); it is
    kept in the checkpoint (under ``sched_log``, only when one is passed, so other checkpoints keep their bytes)
    and restored on resume.
    """
    if graphed is None:
        graphed = device.type == "cuda" and grad_sync is None and not cfg.grad_scaling
    if graphed and grad_sync is not None:
        raise ValueError("graphed steps do not sync gradients across processes: pass graphed=False with grad_sync")
    rank, world_size = shard or (0, 1)
    place(supernet, device)                       # channels_last, and the AVX2 guard (mpq.training.hardware)
    supernet.train()
    gen = torch.Generator().manual_seed(seed)
    sgd, adam = optimizers(supernet, cfg)
    steps_per_epoch = full_batches(len(train), batch_size)      # refused where there is no whole batch
    total_steps = cfg.epochs * steps_per_epoch
    sched = warmup_cosine(sgd, int(cfg.warmup_epochs * steps_per_epoch), total_steps)
    sched_steps = torch.optim.lr_scheduler.CosineAnnealingLR(adam, T_max=total_steps)
    ema = AveragedModel(supernet, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
    history, start_epoch, seconds = History(), 0, 0.0
    sched_cfg = cfg.scheduler_config()
    sched_calls = set(call_steps(total_steps, sched_cfg)) if cfg.scheduler and cfg.num_random_paths > 0 else set()
    if sched_calls and cfg.sched_freeze_activations is None:
        raise ValueError("oneshot.sched_freeze_activations is null (the model family's setting) and the scheduler "
                         "is on: train with the recipe resolved for the model, OneShotConfig.for_model(name)")
    freeze_activations = bool(cfg.sched_freeze_activations)      # no call, no frozen layer: either is the same
    frozen: list[str] = []
    if checkpoint is not None and Path(checkpoint).is_file():
        fix = "delete it to start afresh (or restore what it was trained with to resume)"
        state = load_checkpoint(checkpoint, fix=fix)
        require_keys(state, ("epoch", "config"), checkpoint, fix)
        stored_config(OneShotConfig, state, checkpoint, fix)      # options this version does not know: refused
        done = training_progress(state)[2]            # a finished file has no optimizer state, and needs none
        require_keys(state, tuple(k for k in CHECKPOINT_KEYS if not (done and k in RESUME_KEYS + ("supernet",))),
                     checkpoint, fix)
        if state["config"] != _plain(asdict(cfg)):
            raise ValueError(f"checkpoint {checkpoint} was trained with another oneshot config; {fix}")
        for key, value in (meta or {}).items():
            check_matches(checkpoint, f"meta {key}", state["meta"].get(key), _plain(value), fix)
        if "supernet" in state:
            supernet.load_state_dict(state["supernet"])
        ema.load_state_dict(state["ema"])
        if done and "supernet" not in state:       # a finished file kept the EMA weights only (keep_weights)
            supernet.load_state_dict({k[len("module."):]: v for k, v in state["ema"].items() if k.startswith("module.")})
        if not done:
            sgd.load_state_dict(state["sgd"])
            adam.load_state_dict(state["adam"])
            sched.load_state_dict(state["sched"])
            sched_steps.load_state_dict(state["sched_steps"])
            gen.set_state(state["generator"])
        history = History(**{k: v for k, v in state["history"].items() if k != "seconds"})
        history.seconds = [math.nan] * len(history.epoch)     # earlier epochs' wall times are not stored
        start_epoch, frozen = state["epoch"], list(state["frozen"])
        if sched_log is not None:
            if "sched_log" not in state:
                log.warning("checkpoint %s holds no scheduler record: the calls before epoch %d are not in this "
                            "run's record", checkpoint, start_epoch)
            sched_log.load_state(state.get("sched_log", []))
        log.info("resumed from %s at epoch %d", checkpoint, start_epoch)
    # the last complete epoch on disk (None: no checkpoint yet), for the messages when training stops early
    saved = start_epoch if checkpoint is not None and Path(checkpoint).is_file() else None
    step_fn = None
    if graphed:
        step_fn = GraphedStep(supernet, cfg)     # before the EMA's tensor lists: they alias the stacked rows
    ema_update = EmaUpdate(ema, supernet, cfg.ema_decay)
    # the numbers every step brings to the host anyway (step_stats): checking them costs no device sync
    checked = ("loss_max", "loss_rand", "idm") if cfg.num_random_paths else ("loss_max",)
    try:
        for epoch in range(start_epoch, cfg.epochs):
            if stop_after_epoch is not None and epoch >= stop_after_epoch:
                break
            start, sums, n = time.perf_counter(), {"loss_max": 0.0, "loss_rand": 0.0, "idm": 0.0}, 0
            bar = tqdm(batches(train, batch_size, shuffle=True, gen=gen, drop_last=True), total=steps_per_epoch,
                       desc=f"one-shot epoch {epoch + 1}/{cfg.epochs}", disable=not progress, leave=False)
            for i, (images, labels) in enumerate(bar):
                step = epoch * steps_per_epoch + i
                x, y = to_device(augment(images, gen, pad, flip), labels, device)
                if world_size > 1:
                    x, y = x[rank::world_size], y[rank::world_size]            # this process's slice of the batch
                if step in sched_calls:
                    frozen = schedule(supernet, apply_decision(supernet.choices, frozen,
                                                               activations=freeze_activations),
                                      step / total_steps, sched_cfg, sched_log, step)
                sgd.zero_grad(set_to_none=True)
                adam.zero_grad(set_to_none=True)
                qe_weight = (qe_weight_at(step, total_steps, cfg.qe_start, cfg.qe_weight, cfg.qe_ramp)
                             if cfg.quant_error_penalty else 0.0)
                candidates = (apply_decision(supernet.choices, frozen, activations=freeze_activations)
                              if frozen else None)
                if step_fn is not None:
                    stats = step_fn(x, y, gen, qe_weight, candidates)
                else:
                    stats = train_step(supernet, x, y, cfg, gen, qe_weight, grad_sync, candidates)
                sgd.step()
                adam.step()
                sched.step(); sched_steps.step()
                ema_update()
                if on_step is not None:
                    on_step(step, total_steps, supernet)
                if stop_on_nonfinite and not all(math.isfinite(stats[k]) for k in checked):
                    raise TrainingDiverged(diverged_message(cfg, stats, step, epoch, checkpoint, saved))
                for k in sums:
                    sums[k] += stats[k]
                n += 1
            epoch_seconds = time.perf_counter() - start
            seconds += epoch_seconds
            history.append(epoch=epoch + 1, loss=sums["loss_max"] / n, train_acc=float("nan"), test_acc=float("nan"),
                           lr=sgd.param_groups[0]["lr"], seconds=epoch_seconds)
            if cfg.num_random_paths:
                log.info("one-shot epoch %d: max-path loss %.4f, random-path loss %.4f, IDM %.4f, %d layers frozen "
                         "(%.1fs)", epoch + 1, sums["loss_max"] / n, sums["loss_rand"] / n, sums["idm"] / n,
                         len(frozen), epoch_seconds)
            else:   # a fixed configuration (baselines, retraining): the max path is the only path
                log.info("epoch %d: loss %.4f (%.1fs)", epoch + 1, sums["loss_max"] / n, epoch_seconds)
            if grad_sync is not None:
                grad_sync.sync_buffers(supernet)       # BN statistics: average the per-process estimates
                grad_sync.sync_buffers(ema.module)
            writes = checkpoint is not None and rank == 0
            bad = (nonfinite_tensors(itertools.chain(supernet.state_dict().items(),
                                                     (("ema." + k, v) for k, v in ema.state_dict().items())))
                   if stop_on_nonfinite or writes else [])       # one device sync per epoch
            if bad and stop_on_nonfinite:
                raise TrainingDiverged(f"one-shot training diverged: after epoch {epoch + 1} of {cfg.epochs} the "
                                       f"weights {describe_tensors(bad)} hold nan or inf although every step's "
                                       f"loss was finite; {_look_at(cfg)}; {_kept(checkpoint, saved, cfg.epochs)}")
            if writes and bad:
                log.warning("epoch %d left non-finite weights (%s): checkpoint %s not written", epoch + 1,
                            describe_tensors(bad), checkpoint)
            elif writes:
                last = epoch + 1 == cfg.epochs       # a finished file keeps no optimizer state (RESUME_KEYS)
                save_checkpoint({**({} if last and not keep_weights else {"supernet": supernet.state_dict()}),
                                 "ema": ema.state_dict(),
                                 **({} if last else {"sgd": sgd.state_dict(), "adam": adam.state_dict(),
                                                     "sched": sched.state_dict(),
                                                     "sched_steps": sched_steps.state_dict(),
                                                     "generator": gen.get_state()}),
                                 "history": history.as_dict(times=False), "epoch": epoch + 1,
                                 # only an unfinished file carries the flag, so a finished one keeps the bytes it
                                 # had before the flag existed (training_progress reads both the same way)
                                 **({} if last else {"finished": False}),
                                 "config": _plain(asdict(cfg)), "meta": _plain(meta or {}), "frozen": list(frozen),
                                 **({} if sched_log is None else {"sched_log": sched_log.state()})},
                                checkpoint)
                saved = epoch + 1
    except KeyboardInterrupt:
        raise TrainingInterrupted(checkpoint if saved else None, saved or 0, cfg.epochs) from None
    supernet.set_float()
    ema.module.set_float()
    return OneShotRun(ema=ema.module, supernet=supernet, history=history, seconds=seconds, frozen=list(frozen),
                      freeze_activations=freeze_activations)


def build_supernet(float_model: nn.Module, spec: SupernetSpec, calib: ImageSet, input_size: Sequence[int],
                   calib_images: int = 256, layer_choices: Mapping[str, tuple[Sequence[int], Sequence[int]]] | None = None
                   ) -> Supernet:
    """Convert a float model and initialise its step sizes on the first calibration batch."""
    supernet = Supernet(float_model, input_size, spec, layer_choices=layer_choices)
    x, y = next(batches(calib, calib_images, shuffle=False))
    supernet.calibrate(to_device(x, y, torch.device("cpu"))[0])
    return supernet


def _plain(value):
    """Tuples as lists, recursively: a checkpoint's metadata compares equal to what it was written from."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def training_subset(train: ImageSet, train_size: int | None) -> ImageSet:
    """The images one-shot training (and every baseline and retraining) sees: a prefix of the split.

    One function for the notebooks and ``mpq.training.distributed``, so both train on the same images.
    ``train_size`` None: the whole split; zero or less is refused (it once meant "all" by accident).
    """
    if train_size is not None and train_size <= 0:
        raise ValueError(f"train_size must be a positive number of images (or None: the whole split), got {train_size}")
    return train.subset(torch.arange(min(len(train) if train_size is None else train_size, len(train))))


def run_meta(model: str, width_mult: float, splits: Splits, train: ImageSet, **extra) -> dict:
    """What a training checkpoint records about its run: model, width, classes, and the data identity.

    The data identity (data set, split seed, subset sizes, class names, training images) lets
    ``load_supernet`` and ``python -m mpq search`` rebuild exactly the held-out scoring subset.
    """
    return {"model": model, "width_mult": width_mult, "num_classes": len(splits.train.classes),
            "data": {**splits.identity, "train_images": len(train)}, **extra}


SUPERNET_FIX = "re-run the stage that trains it (`dvc repro supernet`)"


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def read_supernet_state(path: str | Path, which: str = "ema", fix: str = SUPERNET_FIX) -> dict:
    """A one-shot checkpoint's state (``load_checkpoint``), checked by ``check_supernet_state``."""
    return check_supernet_state(load_checkpoint(path, fix=fix), path, which, fix)


def check_supernet_state(state: dict, path: str | Path, which: str = "ema", fix: str = SUPERNET_FIX, *,
                         identity: bool = True) -> dict:
    """``state`` (read from one-shot checkpoint ``path``) with each entry a reader uses checked before it is used:
    the training config (``stored_config``: options this version does not know are refused naming the version
    that wrote them), the epoch and the finished flag, the metadata and (``identity``: for a reader that makes the
    splits again from it) its data identity, the scheduler's frozen layers and the weights ``which``. A missing
    entry, or one of the wrong type, is one ``CheckpointError`` naming the file, the entry and ``fix``."""
    from mpq.data.datasets import check_identity
    from mpq.models import list_models

    require_keys(state, tuple(dict.fromkeys(RELEASE_KEYS + (which,))), path, fix)
    stored_config(OneShotConfig, state, path, fix)

    def refuse(entry: str, value: object, expected: str) -> None:
        raise CheckpointError(f"checkpoint {path} holds {entry} {value!r}, not {expected}: damaged, or not an mpq "
                              f"one-shot checkpoint; {fix}")

    if not _is_int(state["epoch"]) or state["epoch"] < 0:
        refuse("epoch", state["epoch"], "a number of epochs")
    if not isinstance(state.get("finished", False), bool):
        refuse("finished", state["finished"], "true or false")
    meta = state["meta"]
    if not isinstance(meta, Mapping):
        refuse("meta", meta, "a mapping")
    require_keys(meta, ("model", "width_mult", "num_classes", "data"), path, fix)
    if meta["model"] not in list_models():
        refuse("meta model", meta["model"], f"a registered model ({', '.join(list_models())})")
    if isinstance(meta["width_mult"], bool) or not isinstance(meta["width_mult"], (int, float)) \
            or not math.isfinite(meta["width_mult"]) or meta["width_mult"] <= 0:
        refuse("meta width_mult", meta["width_mult"], "a finite number > 0")
    if not _is_int(meta["num_classes"]) or meta["num_classes"] < 2:
        refuse("meta num_classes", meta["num_classes"], "a number of classes >= 2")
    try:
        if identity:
            check_identity(meta["data"])
        elif not isinstance(meta["data"], Mapping):
            raise ValueError(f"data identity is {meta['data']!r}, not a mapping")
    except ValueError as exc:
        raise CheckpointError(f"checkpoint {path}: its {exc}; {fix}") from None
    if not isinstance(state["frozen"], list) or not all(isinstance(n, str) for n in state["frozen"]):
        refuse("frozen", state["frozen"], "a list of layer names")
    weights = state[which]
    if not isinstance(weights, Mapping):
        refuse(which, type(weights).__name__, "a mapping of names to tensors")
    odd = [k for k, v in weights.items() if not isinstance(k, str) or not (torch.is_tensor(v) or k.endswith("_extra_state"))]
    if odd:
        refuse(f"{which} entries", odd[:3], "tensors")
    return state


def load_supernet(path: str | Path, which: str = "ema", *, model: str | None = None, width_mult: float | None = None,
                  spec: SupernetSpec | None = None, num_classes: int | None = None,
                  data: Mapping | None = None, allow_unfinished: bool = False, state: dict | None = None) -> Supernet:
    """Rebuild a trained supernet from a one-shot checkpoint (``which``: "ema", the default, or "supernet").

    Each given expectation (model name, width, candidates as a ``SupernetSpec``, number of classes, the
    data identity of ``Splits.identity``) must match the checkpoint, or it is refused naming both sides. A
    checkpoint whose training has not finished (``training_progress``) is refused unless ``allow_unfinished``.
    ``state``: the file's contents, already read by ``read_supernet_state`` (it is not read again).
    """
    from mpq.models import create_model, model_entry

    # the splits are not made here: an identity is compared (``data``), so it need not be complete
    state = check_supernet_state(load_checkpoint(path, fix=SUPERNET_FIX) if state is None else state, path, which,
                                 identity=False)
    epoch, epochs, finished = training_progress(state)
    if not finished and not allow_unfinished:
        raise CheckpointError(f"checkpoint {path} is unfinished: it holds epoch {epoch} of {epochs}; finish its "
                              "training (the command that trains it resumes from this file), or allow an unfinished "
                              "checkpoint explicitly")
    meta = state["meta"]
    cfg = stored_recipe(state, path, SUPERNET_FIX)
    fix = "pass the checkpoint of the model you mean, or re-train it with these params (`dvc repro`)"
    for what, stored, expected in (("model", meta["model"], model), ("width_mult", meta["width_mult"], width_mult),
                                   ("num_classes", meta["num_classes"], num_classes),
                                   ("candidates", _plain(asdict(cfg.supernet_spec())), spec and _plain(asdict(spec)))):
        if expected is not None:
            check_matches(path, what, stored, expected, fix)
    if data is not None:
        for key, value in data.items():
            if key in meta["data"] and key != "test_size":       # the test set plays no part in training
                check_matches(path, f"data {key}", meta["data"][key], _plain(value), fix)
    net = create_model(meta["model"], num_classes=meta["num_classes"], width_mult=meta["width_mult"])
    supernet = Supernet(net, model_entry(meta["model"]).input_size, cfg.supernet_spec())
    weights = state[which]
    if which == "ema":   # AveragedModel's state: the module's entries under "module.", plus a step counter
        weights = {k[len("module."):]: v for k, v in weights.items() if k.startswith("module.")}
    try:
        supernet.load_state_dict(weights)
    except RuntimeError as exc:
        raise ValueError(f"checkpoint {path}: its weights do not fit {meta['model']} at width "
                         f"{meta['width_mult']} ({str(exc).splitlines()[0]}); {SUPERNET_FIX}") from None
    return supernet.eval()


# the keys a checkpoint written before them lacks, and what its training did instead (before issue 45): such a file
# still loads, and its search space is the one it was trained in
EARLIER_RECIPE = {"cancel_2bit_decay_rule": "per_step_layer", "depthwise_floor_activations": False,
                  "sched_count_rounding": "round", "sched_freeze_activations": False,
                  "sched_score_candidates": "current"}


def stored_recipe(state: Mapping, path: str | Path = "(in memory)", fix: str = SUPERNET_FIX) -> OneShotConfig:
    """The one-shot recipe a checkpoint's ``state`` was trained with, checked as ``stored_config`` checks it; keys
    newer than the file take what its training did instead (``EARLIER_RECIPE``)."""
    config = state.get("config")
    if isinstance(config, Mapping):
        state = {**state, "config": {**EARLIER_RECIPE, **config}}
    return stored_config(OneShotConfig, state, path, fix)


def checkpoint_candidates(path: str | Path, supernet: Supernet, state: dict | None = None) -> dict[str, Choices]:
    """The search space a one-shot checkpoint leaves: its scheduler's last decision applied to ``supernet``, a frozen
    layer losing what it lost in that training (``oneshot.sched_freeze_activations``). ``state``: the file's
    contents, already read by ``read_supernet_state``."""
    state = read_supernet_state(path) if state is None else state
    unknown = sorted(set(state["frozen"]) - set(supernet.choices))
    if unknown:
        raise CheckpointError(f"checkpoint {path}: the scheduler's decision names layers {unknown} that are not "
                              f"searchable layers of {state['meta']['model']}; {SUPERNET_FIX}")
    return apply_decision(supernet.choices, state["frozen"],
                          activations=bool(stored_recipe(state, path).sched_freeze_activations))


def checkpoint_meta(path: str | Path) -> dict:
    """The ``meta`` of a one-shot checkpoint (model, width, classes, data identity)."""
    return read_supernet_state(path)["meta"]


def training_progress(state: Mapping) -> tuple[int, int, bool]:
    """``(epochs trained, epochs planned, finished)`` of a one-shot checkpoint's ``state``.

    An unfinished checkpoint carries ``finished: False``; a finished one carries no flag, so its bytes are
    those it had before the flag existed. Every file is written after a whole epoch with that epoch's number
    and the run's config, so a file without the flag is finished when its epoch is the config's last (not
    merely because the flag is missing)."""
    epoch, epochs = int(state["epoch"]), int(state["config"]["epochs"])
    return epoch, epochs, bool(state.get("finished", epoch >= epochs))

