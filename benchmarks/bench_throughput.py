"""Throughput of fake-quantized vs full-precision training and inference, measured in one run.

    python benchmarks/bench_throughput.py --out reports/metrics/throughput.json   # settings: params.yaml `benchmark`
    python benchmarks/bench_throughput.py --model mobilenetv2_28 --reps 20        # flags override params.yaml

Reports images/s of (a) one full-precision training step, (b) one fake-quantized training path at a
random mixed configuration (the unit of one-shot training), (c) a whole one-shot step (max path +
random paths, distillation; plain, and with IDM), and of inference FP vs fake-quantized; plus the ratios. Runs interleave
(FP, FQ, FP, FQ, ...) so background load hits both alike; medians are reported.

The same two steps again at the ablation's batch of 16 images (``--small-batch``), where a step is bound by
per-layer overhead rather than arithmetic: the one-shot step over the FP step there.

Then the greedy search's evaluations per second, full forward passes against incremental ones (a one-layer
move re-runs only the network downstream of that layer, ``mpq.search.evaluation.Scorer``), on one greedy
iteration's moves from uniform W4A4; and incremental ones on 128 and on 512 scoring images (each set one
batch), interleaved: what a greedy walk with more scoring images costs per evaluation.

Then, on a CPU, the LSQ quantizer's one-pass kernels (``mpq.method.cpu_kernels``) against its torch ops, interleaved:
a fake-quantized path, a one-shot step of the default recipe and an incremental search evaluation, each as the
time with torch ops over the time with the kernels (the kernels are on everywhere else in this benchmark).

Then a profile (torch.profiler, CPU) of the three things the study spends its time on: a one-shot step
(scheduler's candidates and IDM as in the default recipe), one greedy-search evaluation (a configuration
scored on the scoring images) and one BN recalibration: per piece, the operators with the most self
time and the share of wall time spent outside operators (Python, dispatch), which no kernel speed-up
can remove.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time
from unittest import mock
from pathlib import Path

import torch
from torch.nn import functional as F

from torch.profiler import ProfilerActivity, profile

from mpq.method import cpu_kernels
from mpq.training.checkpoint import write_json
from mpq.config import load_params
from mpq.training.hardware import onednn_runs_avx2, place
from mpq.models import create_model
from mpq.data.datasets import ImageSet
from mpq.search.evaluation import make_scorer, recalibrate, search_space
from mpq.training.recipe import OneShotConfig
from mpq.training.oneshot import train_step
from mpq.method.supernet import Supernet


SMALL_BATCH = 16         # ablation.batch_size: the one-shot step there is bound by per-layer overhead
SCORE_SIZES = (128, 512)  # scoring images: search.score_size, and the wider set the ablation's levels may use


def _time(fn, reps: int, device: torch.device) -> float:
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)   # CUDA runs asynchronously
    sync()
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    sync()
    return (time.perf_counter() - start) / reps


def profile_ops(fn, reps: int, top: int = 8) -> dict:
    """Wall time per call of ``fn`` and its ``top`` operators by self CPU time (share of wall time)."""
    fn()                                                   # warm-up outside the profile
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        for _ in range(reps):
            fn()
        wall = (time.perf_counter() - start) / reps
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    events.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    in_ops = sum(e.self_cpu_time_total for e in events) / 1e6 / reps
    return {"ms_per_call": round(1e3 * wall, 2),
            "share_outside_operators": round(max(0.0, 1.0 - in_ops / wall), 3),
            "top_operators": [{"op": e.key, "calls_per_call": round(e.count / reps, 1),
                               "share": round(e.self_cpu_time_total / 1e6 / reps / wall, 3)} for e in events[:top]]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml", help="defaults from this file's `benchmark` section")
    parser.add_argument("--model")
    parser.add_argument("--width-mult", type=float)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--reps", type=int)
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--small-batch", type=int, default=SMALL_BATCH,
                        help="the overhead-bound batch of the ablation's steps (default %(default)s)")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda where a GPU is present")
    parser.add_argument("--no-profile", action="store_true", help="skip the operator profile (CPU time only)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    device = torch.device(args.device)
    settings = load_params(args.params).get("benchmark", {}) if Path(args.params).is_file() else {}
    for key, default in (("model", "resnet20"), ("width_mult", 0.5), ("batch_size", 128), ("reps", 10), ("rounds", 3)):
        if getattr(args, key) is None:
            setattr(args, key, settings.get(key, default))
    torch.manual_seed(0)
    float_model = create_model(args.model, width_mult=args.width_mult)
    supernet = Supernet(float_model, (1, 28, 28))
    x = torch.randn(args.batch_size, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (args.batch_size,))
    supernet.calibrate(x)
    rerouted = place(float_model, device) + place(supernet, device)   # as training places them (the AVX2 guard)
    x, y = x.to(device), y.to(device)
    gen = torch.Generator().manual_seed(0)
    cfg = OneShotConfig(scheduler=False, idm=False)     # the plain one-shot step
    cfg_idm = OneShotConfig(scheduler=False, idm=True)   # the same with information distortion mitigation
    fp_opt = torch.optim.SGD(float_model.parameters(), lr=1e-3, momentum=0.9)
    sn_opt = torch.optim.SGD(supernet.parameters(), lr=1e-3, momentum=0.9)

    def fp_step_on(images: torch.Tensor, labels: torch.Tensor):
        def step():
            fp_opt.zero_grad(set_to_none=True)
            F.cross_entropy(float_model(images), labels).backward()
            fp_opt.step()
        return step

    def oneshot_step_on(images: torch.Tensor, labels: torch.Tensor, config: OneShotConfig = cfg):
        def step():
            sn_opt.zero_grad(set_to_none=True)
            train_step(supernet, images, labels, config, gen, qe_weight=0.0)
            sn_opt.step()
        return step

    fp_step, oneshot_step, oneshot_idm_step = fp_step_on(x, y), oneshot_step_on(x, y), oneshot_step_on(x, y, cfg_idm)

    def fq_path():
        supernet.set_config(supernet.sample_config(gen))
        sn_opt.zero_grad(set_to_none=True)
        F.cross_entropy(supernet(x), y).backward()
        sn_opt.step()

    @torch.no_grad()
    def fp_infer():
        float_model(x)

    @torch.no_grad()
    def fq_infer():
        supernet(x)

    float_model.train(), supernet.train()
    for fn in (fp_step, fq_path, oneshot_step, oneshot_idm_step):
        fn()  # warm-up
    times = {k: [] for k in ("fp_train", "fq_train_path", "oneshot_step", "oneshot_idm_step", "fp_infer", "fq_infer")}
    for _ in range(args.rounds):
        float_model.train(), supernet.train()
        times["fp_train"].append(_time(fp_step, args.reps, device))
        times["fq_train_path"].append(_time(fq_path, args.reps, device))
        times["oneshot_step"].append(_time(oneshot_step, max(1, args.reps // 4), device))
        times["oneshot_idm_step"].append(_time(oneshot_idm_step, max(1, args.reps // 4), device))
        float_model.eval(), supernet.eval()
        supernet.set_config(supernet.sample_config(gen))
        times["fp_infer"].append(_time(fp_infer, args.reps, device))
        times["fq_infer"].append(_time(fq_infer, args.reps, device))
    # the overhead-bound batch: FP step and plain one-shot step on the first ``small_batch`` images, interleaved
    fp_step_small = fp_step_on(x[:args.small_batch], y[:args.small_batch])
    oneshot_step_small = oneshot_step_on(x[:args.small_batch], y[:args.small_batch])
    float_model.train(), supernet.train()
    fp_step_small(), oneshot_step_small()            # warm-up
    times["fp_train_small_batch"], times["oneshot_step_small_batch"] = [], []
    for _ in range(args.rounds):
        times["fp_train_small_batch"].append(_time(fp_step_small, args.reps, device))
        times["oneshot_step_small_batch"].append(_time(oneshot_step_small, max(1, args.reps // 4), device))
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "model": args.model, "width_mult": args.width_mult, "batch_size": args.batch_size,
        "threads": torch.get_num_threads(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "device": str(device), "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "torch": torch.__version__,
        "onednn_avx2_kernels": onednn_runs_avx2(), "rerouted_convs": rerouted,
        "small_batch_size": args.small_batch,
        "img_per_s": {k: round((args.small_batch if k.endswith("small_batch") else args.batch_size) / v, 1)
                      for k, v in med.items()},
        "step_ms": {k: round(1e3 * v, 2) for k, v in med.items() if "train" in k or "step" in k},
        "ratio_fq_vs_fp_train": round(med["fq_train_path"] / med["fp_train"], 3),
        "ratio_oneshot_step_vs_fp_train": round(med["oneshot_step"] / med["fp_train"], 3),
        "ratio_idm_vs_plain_oneshot_step": round(med["oneshot_idm_step"] / med["oneshot_step"], 3),
        "ratio_oneshot_step_vs_fp_train_small_batch": round(med["oneshot_step_small_batch"]
                                                            / med["fp_train_small_batch"], 3),
        "ratio_fq_vs_fp_infer": round(med["fq_infer"] / med["fp_infer"], 3),
    }
    # where the time goes: a one-shot step of the default recipe, a search evaluation, a BN recalibration
    full = OneShotConfig().for_model(args.model)          # scheduler candidates and IDM on, as in params.yaml
    frozen = list(supernet.searchable)[: len(supernet.searchable) // 3]
    from mpq.method.scheduler import apply_decision
    candidates = apply_decision(supernet.choices, frozen, activations=full.sched_freeze_activations)

    def full_step():
        sn_opt.zero_grad(set_to_none=True)
        train_step(supernet, x, y, full, gen, qe_weight=0.05, candidates=candidates)
        sn_opt.step()

    images = (torch.rand(1000, 1, 28, 28) * 255).to(torch.uint8)
    data = ImageSet(images, torch.randint(0, 10, (1000,)), tuple(str(i) for i in range(10)))
    supernet.train()
    scorer = make_scorer(supernet, data.subset(torch.arange(128)), incremental=False)

    # greedy-search evaluations: full forward passes vs incremental ones (the moves of one greedy iteration,
    # each one layer one step down from uniform W4A4, scored from the cached base: mpq.search.evaluation.Scorer)
    space = search_space(supernet)
    base = space.cfg(space.start_key(4))
    moves = []
    for name in space.names:
        for dim, choices in ((0, space.w_choices[name]), (1, space.a_choices[name])):
            pos = choices.index(base[name][dim])
            if pos > 0:
                pair = list(base[name])
                pair[dim] = choices[pos - 1]
                moves.append({**base, name: tuple(pair)})
    incremental = make_scorer(supernet, data.subset(torch.arange(128)), incremental=True)

    def iteration_full():
        for cfg_ in moves:
            scorer(cfg_)

    def iteration_incremental():
        incremental.around(base)
        for cfg_ in moves:
            incremental(cfg_)

    search_times = {"full": [], "incremental": []}
    for _ in range(args.rounds):
        search_times["full"].append(_time(iteration_full, 1, device) / len(moves))
        incremental.reset()
        search_times["incremental"].append(_time(iteration_incremental, 1, device) / len(moves))
    med_s = {k: statistics.median(v) for k, v in search_times.items()}
    result["search_evaluation_ms"] = {k: round(1e3 * v, 2) for k, v in med_s.items()}
    result["search_evaluation_moves"] = len(moves)
    result["ratio_search_full_vs_incremental"] = round(med_s["full"] / med_s["incremental"], 3)
    # incremental evaluations on more scoring images, each set scored as one batch (its BN statistics whole)
    sized = {n: make_scorer(supernet, data.subset(torch.arange(n)), batch_size=n, incremental=True)
             for n in SCORE_SIZES}
    sized_times = {n: [] for n in SCORE_SIZES}
    sized_moves = moves[:4 * args.reps]      # all 40 of ResNet-20 at the default reps; 4 in the smoke profile

    def sized_iteration(n):
        sized[n].reset()
        sized[n].around(base)
        for cfg_ in sized_moves:
            sized[n](cfg_)

    for _ in range(args.rounds):
        for n in SCORE_SIZES:
            sized_times[n].append(_time(lambda: sized_iteration(n), 1, device) / len(sized_moves))
    med_n = {n: statistics.median(v) for n, v in sized_times.items()}
    result["search_evaluations_per_s"] = {str(n): round(1 / v, 2) for n, v in med_n.items()}
    result["search_evaluations_per_s_moves"] = len(sized_moves)
    result["ratio_search_512_vs_128_images"] = round(med_n[SCORE_SIZES[-1]] / med_n[SCORE_SIZES[0]], 3)
    del sized
    # the quantizer's one-pass CPU kernels (mpq.method.cpu_kernels) against its torch ops, interleaved in this run
    result["lsq_cpu_kernels"] = cpu_kernels.load() is not None
    if result["lsq_cpu_kernels"] and device.type == "cpu":
        supernet.train()
        pieces = {"fq_train_path": (fq_path, args.reps), "oneshot_step_default_recipe": (full_step, max(1, args.reps // 4)),
                  "search_evaluation_incremental": (iteration_incremental, 1)}
        kernel_times = {(k, on): [] for k in pieces for on in (True, False)}
        for _ in range(args.rounds):
            for on in (True, False):
                with contextlib.nullcontext() if on else mock.patch.object(cpu_kernels, "load", return_value=None):
                    for key, (fn, reps) in pieces.items():
                        incremental.reset()
                        kernel_times[key, on].append(_time(fn, reps, device))
        med_k = {k: statistics.median(v) for k, v in kernel_times.items()}
        result["lsq_cpu_kernels_speedup"] = {k: round(med_k[k, False] / med_k[k, True], 3) for k in pieces}
    config = supernet.sample_config(gen)
    reps = max(1, args.reps // 4)
    if not args.no_profile:
        result["profile"] = {"oneshot_step": profile_ops(full_step, reps),
                             "search_evaluation_128_images": profile_ops(lambda: scorer(config), args.reps),
                             "bn_recalibration_1000_images": profile_ops(lambda: recalibrate(supernet, config, data), reps)}
    print(json.dumps(result, indent=2))
    if args.out:
        write_json(result, args.out)


if __name__ == "__main__":
    main()
