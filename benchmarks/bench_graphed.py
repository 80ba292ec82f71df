"""The one-shot step replayed as a CUDA graph (``mpq.training.graphed.GraphedStep``) against the eager step, per model.

    python benchmarks/bench_graphed.py --device cuda --batch-sizes 128 1024 --out graphed.json
    python benchmarks/bench_graphed.py --device cpu --models resnet20        # the same code without a graph

For each model at width 0.5 (random weights: a step's time does not depend on them) and batch size: the time
of a float training step, of the eager one-shot step (``oneshot.train_step``) and of the graphed one, each
with its optimiser steps (learning rates 1e-3 and 1e-4: random weights would diverge at the study's), the
default recipe (three random paths, distillation, IDM, the quantization-error
penalty at weight 0.05, the scheduler's candidates with a third of the layers frozen), interleaved over
rounds, medians reported; the seconds the first graphed call took (warm-up and recording); and how far
the two steps' losses drift apart over three steps from the same start, without the quantization-error
penalty (on random weights it swings by orders of magnitude with a step size; the graph computes the same
sums in another order, and GPU kernels are not deterministic). Then the large profile's supernet stage as those
steps imply it: ``oneshot.epochs`` x steps per epoch x ms per step, per model.
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import time

import torch
from torch.nn import functional as F

from bench_throughput import _time          # the synchronising timer (this script's folder is on sys.path)
from mpq.training.checkpoint import write_json
from mpq.config import load_params
from mpq.training.graphed import GraphedStep
from mpq.training.hardware import place
from mpq.models import create_model, model_entry
from mpq.training.recipe import OneShotConfig
from mpq.training.oneshot import optimizers, train_step
from mpq.method.scheduler import apply_decision
from mpq.method.supernet import Supernet


def _setup(model: str, batch: int, device: torch.device, cfg: OneShotConfig):
    torch.manual_seed(0)
    float_model = create_model(model, width_mult=0.5)
    shape = model_entry(model).input_size
    supernet = Supernet(float_model, shape, cfg.supernet_spec())
    supernet.calibrate(torch.randn(256, *shape).contiguous(memory_format=torch.channels_last))
    place(float_model, device), place(supernet, device)
    float_model.train(), supernet.train()
    x = torch.randn(batch, *shape).contiguous(memory_format=torch.channels_last).to(device)
    y = torch.randint(0, 10, (batch,)).to(device)
    return float_model, supernet, x, y


def measure(model: str, batch: int, device: torch.device, reps: int, rounds: int) -> dict:
    cfg = OneShotConfig(lr=1e-3, step_lr=1e-4).for_model(model)   # the default recipe; small rates keep weights finite
    float_model, eager_net, x, y = _setup(model, batch, device, cfg)
    graph_net = copy.deepcopy(eager_net)
    frozen = list(eager_net.searchable)[::3]
    cands = apply_decision(eager_net.choices, frozen, activations=cfg.sched_freeze_activations)
    fp_opt = torch.optim.SGD(float_model.parameters(), lr=1e-3, momentum=0.9)
    start = time.perf_counter()
    graphed = GraphedStep(graph_net, cfg)
    opts = {"eager": optimizers(eager_net, cfg), "graphed": optimizers(graph_net, cfg)}
    gens = {"eager": torch.Generator().manual_seed(0), "graphed": torch.Generator().manual_seed(0)}
    qe = {"weight": 0.0}        # the drift check runs without the penalty: on random weights it is ill-conditioned
    steps = {"eager": lambda g: train_step(eager_net, x, y, cfg, g, qe["weight"], None, cands),
             "graphed": lambda g: graphed(x, y, g, qe["weight"], cands)}

    def fp_step():
        fp_opt.zero_grad(set_to_none=True)
        F.cross_entropy(float_model(x), y).backward()
        fp_opt.step()

    def oneshot(kind: str):
        sgd, adam = opts[kind]

        def step():
            sgd.zero_grad(set_to_none=True)
            adam.zero_grad(set_to_none=True)
            out = steps[kind](gens[kind])
            sgd.step()
            adam.step()
            return out
        return step

    losses = {k: [oneshot(k)() for _ in range(3)] for k in ("eager", "graphed")}    # same start, same paths
    first_seconds = time.perf_counter() - start
    drift = {key: max(abs(a[key] - b[key]) / abs(a[key]) for a, b in zip(losses["eager"], losses["graphed"]))
             for key in ("loss_max", "loss_rand", "idm")}
    qe["weight"] = 0.05
    fp_step()
    times = {"fp_train": [], "oneshot_eager": [], "oneshot_graphed": []}
    for _ in range(rounds):
        times["fp_train"].append(_time(fp_step, reps, device))
        times["oneshot_eager"].append(_time(oneshot("eager"), max(1, reps // 2), device))
        times["oneshot_graphed"].append(_time(oneshot("graphed"), reps, device))
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"model": model, "batch_size": batch, "ms": {k: round(1e3 * v, 2) for k, v in med.items()},
            "ratio_vs_fp_train": {k: round(med[f"oneshot_{k}"] / med["fp_train"], 2) for k in ("eager", "graphed")},
            "speedup_graphed_vs_eager": round(med["oneshot_eager"] / med["oneshot_graphed"], 2),
            "first_three_steps_seconds": round(first_seconds, 1),
            "first_three_steps": losses, "max_relative_drift": drift}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", nargs="+", default=["resnet20", "mobilenetv2_28", "efficientnet_lite_28"])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[128])
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--large", default="profiles/large.yaml", help="the profile whose supernet stage is estimated")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    device = torch.device(args.device)
    result = {"device": str(device), "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
              "cpu_capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads(),
              "torch": torch.__version__, "runs": []}
    for model in args.models:
        for batch in args.batch_sizes:
            result["runs"].append(measure(model, batch, device, args.reps, args.rounds))
            print(json.dumps(result["runs"][-1]), flush=True)
    large = load_params(args.large)
    per_epoch = (large["data"]["train_size"] or 57000) // large["data"]["batch_size"]
    epochs = large["oneshot"]["epochs"]
    estimate = {}
    for run in result["runs"]:
        if run["batch_size"] == large["data"]["batch_size"] and run["model"] in large["models"]:
            estimate[run["model"]] = {k: round(epochs * per_epoch * run["ms"][f"oneshot_{k}"] / 6e4, 1)
                                      for k in ("eager", "graphed")}
    result["large_supernet_stage_minutes"] = {"steps": epochs * per_epoch, "per_model": estimate,
                                              "sequential": {k: round(sum(m[k] for m in estimate.values()), 1)
                                                             for k in ("eager", "graphed")}}
    print(json.dumps(result["large_supernet_stage_minutes"], indent=2))
    if args.out:
        write_json(result, args.out)


if __name__ == "__main__":
    main()
