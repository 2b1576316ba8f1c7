"""Diffusion benchmark: training and sampling throughput, and the default run end to end.

Prints, all measured in this run (one torch thread by default, as in the run manager's
workers):

* training steps per second of the default ε_θ (width 128, depth 3, batch 256) on 2-D data
  and on the 8×8 digits (64 dimensions);
* sampling steps per second for 10,000 2-D samples with T = 1,000, DDPM and DDIM: each step is
  one batched network call for all samples; a sample of the steps is timed unless ``--full``
  (the steps all cost the same, so the rate extrapolates), and the output says which;
* the same for a batch of 2,000 digits (T = 200);
* the default 2-D run in-process (``run_to_end``): wall time (target: under 30 s) and the
  time to its first frame (target: under 200 ms, median of 5).

Usage: ``.venv/bin/python bench/diffusion.py [--threads N] [--sample-steps S] [--full]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from itertools import islice
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.core import RunContext, checks_of  # noqa: E402
from engine.experiments.diffusion import (  # noqa: E402
    DiffusionParams,
    ddim_sample,
    ddpm_sample,
    experiment,
    make_net,
    train_step,
)
from engine.experiments.diffusion_schedules import make_schedule  # noqa: E402


def training_rate(d: int, steps: int, ctx: RunContext) -> float:
    """Adam steps per second on the simplified criterion, default network and batch."""
    params = DiffusionParams()
    s = make_schedule(params.schedule, params.T)
    alpha_bar = torch.as_tensor(s.alpha_bar, dtype=torch.float32)
    net = make_net(d, params, ctx)
    optimiser = torch.optim.Adam(net.parameters(), lr=params.lr)
    data = torch.randn(20_000, d, generator=ctx.generator)

    def step() -> None:
        idx = torch.randint(0, len(data), (params.batch_size,), generator=ctx.generator)
        train_step(net, optimiser, data[idx], alpha_bar.sqrt(), (1 - alpha_bar).sqrt(),
                   ctx.generator)

    for _ in range(20):
        step()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    return steps / (time.perf_counter() - started)


def sampling_rate(d: int, n: int, T: int, timed: int, ctx: RunContext,
                  sampler: str) -> tuple[float, int]:
    """Reverse steps per second for n samples; times the first ``timed`` of the T steps."""
    params = DiffusionParams(T=T)
    s = make_schedule(params.schedule, T)
    net = make_net(d, params, ctx)
    x_T = torch.randn(n, d, generator=ctx.generator)
    if sampler == "ddpm":
        steps = ddpm_sample(net, x_T, s, s.beta, ctx.generator)
        total = T
    else:
        total = min(timed, T)
        steps = ddim_sample(net, x_T, s, total)
    next(steps)  # x_T itself
    timed = min(timed, total)
    started = time.perf_counter()
    for _ in islice(steps, timed):
        pass
    return timed / (time.perf_counter() - started), total


def default_run() -> tuple[float, list[float], bool]:
    """Wall time of the default run, times to its first frame, whether all checks passed."""
    params = DiffusionParams()
    firsts = []
    for _ in range(5):
        run = experiment.run(params, RunContext(seed=params.seed, device="cpu"))
        started = time.perf_counter()
        next(run)
        firsts.append(time.perf_counter() - started)
        run.close()
    started = time.perf_counter()
    frames = list(experiment.run(params, RunContext(seed=params.seed, device="cpu")))
    wall = time.perf_counter() - started
    return wall, firsts, all(c.passed for c in checks_of(frames).values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--train-steps", type=int, default=500, help="training steps timed")
    parser.add_argument("--sample-steps", type=int, default=100,
                        help="sampling steps timed of T = 1,000 (default 100)")
    parser.add_argument("--full", action="store_true", help="time all 1,000 sampling steps")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ctx = RunContext(seed=0, device="cpu")
    print(f"torch {torch.__version__}, {args.threads} thread(s), {os.cpu_count()} CPU cores, "
          f"load average {os.getloadavg()[0]:.2f} (a shared machine slows every figure)")

    for name, d in (("2-D", 2), ("digits (64-D)", 64)):
        rate = training_rate(d, args.train_steps, ctx)
        print(f"training, {name}, default net and batch 256: {rate:,.0f} steps/s")

    timed = 1000 if args.full else args.sample_steps
    rate, total = sampling_rate(2, 10_000, 1000, timed, ctx, "ddpm")
    what = ("all 1,000 steps timed" if timed >= total
            else f"{timed} of the 1,000 steps timed, each costs the same")
    print(f"sampling, DDPM, 10,000 2-D samples, T = 1,000: {rate:,.0f} steps/s "
          f"({what}; {total / rate:.1f} s for the whole chain)")
    rate, total = sampling_rate(2, 10_000, 1000, timed, ctx, "ddim")
    print(f"sampling, DDIM with {total} of T = 1,000 steps, 10,000 2-D samples: "
          f"{rate:,.0f} steps/s (all {total} timed; {total / rate:.1f} s)")
    rate, total = sampling_rate(64, 2000, 200, 200, ctx, "ddpm")
    print(f"sampling, DDPM, 2,000 digits, T = 200: {rate:,.0f} steps/s "
          f"(all {total} steps timed; {total / rate:.2f} s)")

    wall, firsts, passed = default_run()
    print(f"default 2-D run in-process: {wall:.1f} s end to end (target < 30 s), "
          f"checks {'all passed' if passed else 'FAILED'}")
    print(f"time to the first frame: median {1000 * statistics.median(firsts):.0f} ms, "
          f"max {1000 * max(firsts):.0f} ms of 5 (target < 200 ms)")


if __name__ == "__main__":
    main()
