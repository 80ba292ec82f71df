"""Full-precision training and the pieces every training loop shares (optimiser, schedule, evaluation)."""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Iterable

import torch
from torch import Tensor, nn
from tqdm.std import tqdm  # plain text bars: they render in JupyterLab, papermill output and HTML alike

from mpq.data.datasets import ImageSet, augment, batches, normalize
from mpq.training.checkpoint import describe_tensors, nonfinite_tensors
from mpq.training.hardware import place

log = logging.getLogger(__name__)


def pick_device(prefer: str | None = None) -> torch.device:
    """``prefer`` if given, else CUDA when available, else CPU."""
    if prefer:
        return torch.device(prefer)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def to_device(images: Tensor, labels: Tensor, device: torch.device) -> tuple[Tensor, Tensor]:
    """uint8 batch -> normalised float32 channels_last on ``device`` (channels_last is ~25% faster here)."""
    x = normalize(images.to(device, non_blocking=True)).contiguous(memory_format=torch.channels_last)
    return x, labels.to(device, non_blocking=True)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on conv and linear weights only: not on BN parameters, biases or LSQ step sizes."""
    decay, no_decay = [], []
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or "step_size" in name:
                continue
            is_weight = name == "weight" and isinstance(module, (nn.Conv2d, nn.Linear))
            (decay if is_weight else no_decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def warmup_cosine(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    """Linear warm-up from 1% of the learning rate, then cosine decay to zero, stepped once per batch."""
    warmup_steps = max(0, min(warmup_steps, total_steps - 1))
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, total_steps - warmup_steps))
    if warmup_steps == 0:
        return cosine
    warmup = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=0.01, total_iters=warmup_steps)
    return torch.optim.lr_scheduler.SequentialLR(optimizer, [warmup, cosine], milestones=[warmup_steps])


def full_batches(images: int, batch_size: int) -> int:
    """Optimizer steps in one epoch over ``images`` (whole batches only); refused where there is not one: a
    training of no step would divide by zero in its record, or end as if it had trained."""
    if images // batch_size == 0:
        raise ValueError(f"{images} training images give no full batch of {batch_size}, so training would take no "
                         "step; use more training images or a smaller batch")
    return images // batch_size


class TrainingDiverged(ValueError):
    """Training went non-finite (a nan or infinite loss or weight); the message names the settings to look at."""


@torch.no_grad()
def evaluate(model: nn.Module, data: ImageSet, batch_size: int = 500, device: torch.device | None = None) -> float:
    """Top-1 accuracy (fraction) of ``model`` in eval mode on ``data``."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    correct = 0
    for images, labels in batches(data, batch_size, shuffle=False):
        x, y = to_device(images, labels, device)
        correct += int((model(x).argmax(1) == y).sum())
    model.train(was_training)
    return correct / len(data)


@torch.no_grad()
def predictions(model: nn.Module, data: ImageSet, batch_size: int = 500) -> Tensor:
    """Predicted class per image ``(N,)`` (for paired comparisons on the same test images)."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = [model(to_device(x, y, device)[0]).argmax(1).cpu() for x, y in batches(data, batch_size, shuffle=False)]
    model.train(was_training)
    return torch.cat(out)


@dataclass
class History:
    """Per-epoch training record: loss, train accuracy, test accuracy, learning rate, seconds.

    Checkpoints store it without ``seconds`` (``as_dict(times=False)``): a re-run that reproduces the weights
    then writes the same bytes, and DVC skips every stage downstream of it. Wall times go to the metrics.
    """

    epoch: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    test_acc: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    def append(self, **row: float) -> None:
        for key, value in row.items():
            getattr(self, key).append(value)

    def as_dict(self, times: bool = True) -> dict[str, list[float]]:
        """The record as lists; ``times=False`` leaves out the wall times (what checkpoints store, see below)."""
        return {k: list(v) for k, v in self.__dict__.items() if times or k != "seconds"}


def train_fp(model: nn.Module, train: ImageSet, test: ImageSet, *, epochs: int, batch_size: int, lr: float,
             momentum: float, weight_decay: float, warmup_epochs: float, label_smoothing: float, pad: int,
             flip: bool, seed: int, device: torch.device, progress: bool = True,
             stop_on_nonfinite: bool = True) -> History:
    """Train a float model with SGD (Nesterov) + warm-up/cosine; evaluate on ``test`` after each epoch.

    A step whose loss is not finite, or an epoch that leaves a weight non-finite, stops training with
    ``TrainingDiverged`` naming the learning rate (``fp.lr``); ``stop_on_nonfinite=False`` trains on and leaves
    the record to show it (a study that counts such runs, e.g. a learning-rate grid)."""
    gen = torch.Generator().manual_seed(seed)
    place(model, device)             # channels_last, and the AVX2 guard (mpq.training.hardware)
    model.train()
    optimizer = torch.optim.SGD(param_groups(model, weight_decay), lr=lr, momentum=momentum, nesterov=True)
    steps = full_batches(len(train), batch_size)
    scheduler = warmup_cosine(optimizer, int(warmup_epochs * steps), epochs * steps)
    criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    history = History()
    for epoch in range(epochs):
        start, total_loss, correct, seen = time.perf_counter(), 0.0, 0, 0
        bar = tqdm(batches(train, batch_size, shuffle=True, gen=gen, drop_last=True), total=steps,
                   desc=f"epoch {epoch + 1}/{epochs}", disable=not progress, leave=False)
        for images, labels in bar:
            x, y = to_device(augment(images, gen, pad, flip), labels, device)
            logits = model(x)
            loss = criterion(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            value = loss.item()
            if stop_on_nonfinite and not math.isfinite(value):
                raise TrainingDiverged(f"FP training diverged: the loss is {value} at step {seen // batch_size + 1} "
                                       f"of epoch {epoch + 1} of {epochs}; lower the learning rate (fp.lr, now {lr}) "
                                       f"or check fp.weight_decay (now {weight_decay}); nothing was saved")
            total_loss += value * len(y)
            correct += int((logits.argmax(1) == y).sum())
            seen += len(y)
        seconds = time.perf_counter() - start
        if stop_on_nonfinite and (bad := nonfinite_tensors(model.state_dict().items())):
            raise TrainingDiverged(f"FP training diverged: after epoch {epoch + 1} of {epochs} the weights "
                                   f"{describe_tensors(bad)} hold nan or inf; lower the learning rate (fp.lr, now "
                                   f"{lr}); nothing was saved")
        test_acc = evaluate(model, test, device=device)
        history.append(epoch=epoch + 1, loss=total_loss / seen, train_acc=correct / seen, test_acc=test_acc,
                       lr=optimizer.param_groups[0]["lr"], seconds=seconds)
        log.info("epoch %d: loss %.4f train %.4f test %.4f (%.1fs)", epoch + 1, total_loss / seen,
                 correct / seen, test_acc, seconds)
    return history


FP_FIX = "re-run the FP stage (`dvc repro fp_train`)"


def load_fp_model(path: str, expect_model: str | None = None, expect_width: float | None = None,
                  expect_classes: int | None = None) -> nn.Module:
    """Rebuild a float model from a checkpoint written by the FP stage, checking it is the one expected."""
    from mpq.training.checkpoint import check_matches, load_checkpoint, require_keys
    from mpq.models import create_model

    state = load_checkpoint(path, fix=FP_FIX)
    require_keys(state, ("model", "width_mult", "num_classes", "state_dict"), path, FP_FIX)
    for what, expected in (("model", expect_model), ("width_mult", expect_width), ("num_classes", expect_classes)):
        if expected is not None:
            check_matches(path, what, state[what], expected, f"params.yaml asks for another; {FP_FIX}")
    model = create_model(state["model"], num_classes=state["num_classes"], width_mult=state["width_mult"])
    try:
        model.load_state_dict(state["state_dict"])
    except RuntimeError as exc:
        raise ValueError(f"checkpoint {path}: its weights do not fit {state['model']} at width "
                         f"{state['width_mult']} ({str(exc).splitlines()[0]}); {FP_FIX}") from None
    return model
