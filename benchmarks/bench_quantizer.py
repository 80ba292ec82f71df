"""Time forward+backward of lsq_reference (plain autograd) vs lsq_fake_quant (fused Function).

Usage: python benchmarks/bench_quantizer.py [--numel N] [--reps R] [--bits B] [--channels-last] [--threads T]

The default size is one conv activation of the study's small CNN (128 x 16 x 28 x 28). Prints the
median time of each and the speed-up ratio reference / fused.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from mpq.method.quantizer import int_range, lsq_fake_quant, lsq_grad_scale, lsq_reference

_CHW = 16 * 28 * 28


def _time_pair(fns, x: torch.Tensor, step: torch.Tensor, grad_out: torch.Tensor, qrange: tuple[int, int],
               grad_scale: float, reps: int) -> list[float]:
    """Median fwd+bwd time of each function; runs are interleaved so background load hits both alike."""
    times: list[list[float]] = [[] for _ in fns]
    for i in range(reps + 2):  # two warm-up rounds
        for fn, bucket in zip(fns, times):
            x.grad = step.grad = None
            t0 = time.perf_counter()
            fn(x, step, *qrange, grad_scale).backward(grad_out)
            if i >= 2:
                bucket.append(time.perf_counter() - t0)
    return [statistics.median(bucket) for bucket in times]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--numel", type=int, default=128 * _CHW,
                        help="elements (shaped N x 16 x 28 x 28 when divisible, else 1-d)")
    parser.add_argument("--reps", type=int, default=10, help="timed repetitions (median reported)")
    parser.add_argument("--bits", type=int, default=4)
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    shape = (args.numel // _CHW, 16, 28, 28) if args.numel % _CHW == 0 else (args.numel,)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=gen)
    grad_out = torch.randn(shape, generator=gen)
    if args.channels_last and x.dim() == 4:
        x, grad_out = x.to(memory_format=torch.channels_last), grad_out.to(memory_format=torch.channels_last)
    x.requires_grad_()
    qrange = int_range(args.bits, signed=True)
    step = torch.tensor(2.0 / qrange[1], requires_grad=True)
    grad_scale = lsq_grad_scale(x[0].numel(), qrange[1])

    fns = (lsq_reference, lsq_fake_quant)
    t_ref, t_fast = _time_pair(fns, x, step, grad_out, qrange, grad_scale, args.reps)
    print(f"shape={tuple(shape)} bits={args.bits} threads={torch.get_num_threads()} reps={args.reps}")
    print(f"lsq_reference  fwd+bwd {t_ref * 1e3:8.3f} ms")
    print(f"lsq_fake_quant fwd+bwd {t_fast * 1e3:8.3f} ms")
    print(f"ratio reference/fused  {t_ref / t_fast:8.2f}x")


if __name__ == "__main__":
    main()
