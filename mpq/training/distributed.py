"""Data-parallel one-shot training under ``torchrun``: the one thin place that knows about processes.

    torchrun --nproc_per_node 2 -m mpq.training.distributed --model resnet20 --out checkpoints/supernet/resnet20.pt

Backend: gloo on CPU, nccl on GPU. Every process draws the same global batch, augmentation and random
bit paths from one seeded generator and trains on its slice of the batch, so the sampled configurations
agree across processes without any communication.

Why not the ``DistributedDataParallel`` wrapper: one one-shot step runs 1 + ``num_random_paths``
forward/backward passes that touch *different* parameters (each bit pair has its own BN, each bit-width
its own step size), so the wrapper would need ``find_unused_parameters`` plus ``no_sync`` bookkeeping
across the passes. Averaging the accumulated gradients once per step is the same arithmetic as DDP's
all-reduce, one collective per step, and easy to check. The set of parameters with a gradient is the
same on every process (same configurations), which ``GradientAverager`` asserts.

BatchNorm: each process normalises with the statistics of its own slice (as DDP without SyncBatchNorm
does); running statistics are averaged across processes after every epoch, so replicas end identical.
"""
from __future__ import annotations

import argparse
import logging
import math
import os
import sys

import torch
import torch.distributed as dist
from torch import nn

log = logging.getLogger(__name__)


class GradientAverager:
    """Average gradients (every step) and floating-point buffers (every epoch) over the process group."""

    def __init__(self, world_size: int) -> None:
        self.world_size = world_size

    def __call__(self, params) -> None:
        grads = [p.grad for p in params if p.grad is not None]
        count = torch.tensor([len(grads)], dtype=torch.long)
        counts = [torch.zeros_like(count) for _ in range(self.world_size)]
        dist.all_gather(counts, count)
        if len({int(c) for c in counts}) != 1:
            raise RuntimeError(f"processes disagree on which parameters have gradients: {[int(c) for c in counts]}; "
                               "the sampled bit configurations must match (same seed on every process)")
        flat = torch._utils._flatten_dense_tensors(grads)
        dist.all_reduce(flat)
        flat.div_(self.world_size)
        for g, synced in zip(grads, torch._utils._unflatten_dense_tensors(flat, grads)):
            g.copy_(synced)

    @torch.no_grad()
    def sync_buffers(self, module: nn.Module) -> None:
        for buf in module.buffers():
            if buf.is_floating_point():
                dist.all_reduce(buf)
                buf.div_(self.world_size)


def setup() -> tuple[int, int, torch.device]:
    """Join the process group torchrun describes (or run alone): ``(rank, world_size, device)``."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")
    if world_size > 1:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        # one process per core: torch's own threads would fight over the same cores otherwise
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world_size))
    return rank, world_size, device


def main(argv: list[str] | None = None) -> int:
    from mpq.training.checkpoint import run_command

    parser = argparse.ArgumentParser(description="data-parallel one-shot supernet training (run under torchrun)")
    parser.add_argument("--model", required=True)
    parser.add_argument("--out", required=True, help="checkpoint path (resumed from when it exists)")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--fp-checkpoint", default=None, help="FP weights to start from (default: checkpoints/fp/MODEL.pt; 'none': random init)")
    parser.add_argument("--width-mult", type=float, default=None, help="override models.MODEL.width_mult")
    parser.add_argument("--train-images", type=int, default=None, help="override oneshot.train_size (images per epoch)")
    parser.add_argument("--epochs", type=int, default=None, help="override oneshot.epochs")
    parser.add_argument("--dump-state", default=None, help="write this process's final state to DUMP.rankR.pt (tests)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # the same command resumes from --out: an interrupted run says so, naming its last complete checkpoint
    return run_command(lambda: _train(args), "mpq.training.distributed", sys.argv[1:] if argv is None else argv)


def _train(args: argparse.Namespace) -> int:
    """The launcher's work: read and check the parameters and flags, then train (and resume) one supernet."""
    from mpq.training.checkpoint import check_output, save_checkpoint
    from mpq.config import DataConfig, from_dict, load_params
    from mpq.data.datasets import make_splits
    from mpq.models import create_model, model_entry
    from mpq.training.recipe import OneShotConfig
    from mpq.training.oneshot import build_supernet, run_meta, train_oneshot, training_subset
    from mpq.training.fp import load_fp_model

    for flag, value, default in (("--width-mult", args.width_mult, "models.MODEL.width_mult"),
                                 ("--train-images", args.train_images, "oneshot.train_size"),
                                 ("--epochs", args.epochs, "oneshot.epochs")):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise ValueError(f"{flag} {value}: must be a number > 0; leave it out to use {default} from the params")
    params = load_params(args.params)
    if args.model not in params.get("models", {}):
        raise ValueError(f"--model {args.model}: not in the models section of {args.params} "
                         f"({list(params.get('models', {}))}); add it there or pick one of those")
    fp_path = None if args.fp_checkpoint == "none" else (args.fp_checkpoint or f"checkpoints/fp/{args.model}.pt")
    check_output(args.out, inputs=[args.params, fp_path])     # before the data and the model are loaded
    data_cfg = from_dict(DataConfig, params["data"], "data")
    oneshot = dict(params["oneshot"])
    for key, value in (("epochs", args.epochs), ("train_size", args.train_images)):
        if value is not None:
            oneshot[key] = value
    cfg = from_dict(OneShotConfig, oneshot, "oneshot").for_model(args.model)
    rank, world_size, device = setup()
    seed = int(params["seed"])
    # the same splits and the same one-shot training prefix as notebooks/02_supernet.ipynb
    splits = make_splits(data_cfg.dataset, seed=seed, score_size=data_cfg.score_size, calib_size=data_cfg.calib_size,
                         train_size=data_cfg.train_size, test_size=data_cfg.test_size)
    train = training_subset(splits.train, cfg.train_size)
    if data_cfg.batch_size % world_size:
        raise SystemExit(f"error: data.batch_size {data_cfg.batch_size} does not split evenly over {world_size} "
                         "processes; pick a process count that divides it")
    width = args.width_mult if args.width_mult is not None else params["models"][args.model]["width_mult"]
    torch.manual_seed(seed)
    if fp_path is None:
        log.warning("--fp-checkpoint none: starting from random weights")
        model = create_model(args.model, num_classes=len(splits.train.classes), width_mult=width)
    else:
        model = load_fp_model(fp_path, args.model, width, len(splits.train.classes))
    supernet = build_supernet(model, cfg.supernet_spec(), splits.calib, model_entry(args.model).input_size)
    sync = GradientAverager(world_size) if world_size > 1 else None
    run = train_oneshot(supernet, train, cfg, batch_size=data_cfg.batch_size, pad=data_cfg.pad,
                        flip=data_cfg.flip, seed=seed, device=device, checkpoint=args.out,
                        meta=run_meta(args.model, width, splits, train),
                        progress=rank == 0, shard=(rank, world_size), grad_sync=sync)
    if args.dump_state:
        save_checkpoint({"supernet": run.supernet.state_dict(), "history": run.history.as_dict()},
                        f"{args.dump_state}.rank{rank}.pt")
    if world_size > 1:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
