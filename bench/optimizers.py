"""Optimizer race benchmark: the batched engine against torch.optim one step at a time.

Prints, all measured in this run:

* trajectory-steps per second of a sweep of 4,096 starts x 6 optimizers (GD, heavy ball,
  Nesterov, AdaGrad, RMSprop, Adam) x 2,000 steps, computed as batched tensor operations
  (``engine.experiments.optimizer_rules.BatchedOptimizers``), on Rosenbrock and on the
  default ill-conditioned quadratic;
* the same sweep through the experiment (``mode="cloud"``: streaming, statistics, checks);
* the time per step of a loop that calls ``torch.optim`` once per step per trajectory on the
  same problem (gradients by autograd, ``loss.backward()``), timed on a sample of trajectories
  and steps, and extrapolated to the sweep; the ratio of the two (target: at least 100x);
* the time to the first frame of a default 2,000-step race (target: under 100 ms).

One torch thread by default, as in the run manager's workers.

Usage: ``.venv/bin/python bench/optimizers.py [--threads N] [--sample-steps S]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.core import RunContext  # noqa: E402
from engine.experiments.loss_surfaces import make_surface  # noqa: E402
from engine.experiments.optimizer_rules import (  # noqa: E402
    BatchedOptimizers,
    Coefficients,
    adagrad,
    adam,
    gradient_descent,
    heavy_ball,
    nesterov,
    rmsprop,
)
from engine.experiments.optimizers import OptimizersParams, experiment  # noqa: E402

STARTS, STEPS = 4096, 2000
RULES = [gradient_descent(1e-3), heavy_ball(1e-3, 0.9), nesterov(1e-3, 0.9),
         adagrad(0.1, 1e-8), rmsprop(1e-2, 0.9, 1e-8), adam(1e-2, 0.9, 0.999, 1e-8)]
TORCH_OPTIMIZERS = [
    lambda p: torch.optim.SGD(p, lr=1e-3),
    lambda p: torch.optim.SGD(p, lr=1e-3, momentum=0.9),
    lambda p: torch.optim.SGD(p, lr=1e-3, momentum=0.9, nesterov=True),
    lambda p: torch.optim.Adagrad(p, lr=0.1, initial_accumulator_value=1e-8, eps=0.0),
    lambda p: torch.optim.RMSprop(p, lr=1e-2, alpha=0.9, eps=1e-8),
    lambda p: torch.optim.Adam(p, lr=1e-2, betas=(0.9, 0.999), eps=1e-8),
]


def starts(surface, n: int) -> torch.Tensor:
    x_min, x_max, y_min, y_max = surface.box
    u = torch.rand(n, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return torch.stack([x_min + (x_max - x_min) * u[:, 0], y_min + (y_max - y_min) * u[:, 1]], 1)


def batched_sweep(surface) -> float:
    """Seconds for 4,096 starts x 6 optimizers x 2,000 steps, and the final gaps."""
    optimizers = BatchedOptimizers(Coefficients.stack(RULES), starts(surface, STARTS),
                                   surface.grad)
    started = time.perf_counter()
    for _ in range(STEPS):
        optimizers.step()
    surface.gap(optimizers.theta).median()  # the sweep's result, so nothing is skipped
    return time.perf_counter() - started


def torch_optim_loop(surface, trajectories: int, steps: int) -> float:
    """Seconds per step of torch.optim, one trajectory and one step per Python call."""
    theta0 = starts(surface, trajectories)
    calls = 0
    started = time.perf_counter()
    for make in TORCH_OPTIMIZERS:
        for j in range(trajectories):
            param = theta0[j].clone().requires_grad_(True)
            opt = make([param])
            for _ in range(steps):
                opt.zero_grad()
                surface.gap(param).backward()
                opt.step()
                calls += 1
    return (time.perf_counter() - started) / calls


def first_frame(params: OptimizersParams) -> float:
    started = time.perf_counter()
    for frame in experiment.run(params, RunContext(seed=0, device="cpu")):
        if frame.op == "extend":
            return time.perf_counter() - started
    raise RuntimeError("the race yielded no extend frame")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sample-trajectories", type=int, default=4)
    parser.add_argument("--sample-steps", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), float64, CPU")
    torch_optim_loop(make_surface("quadratic"), 1, 2)  # warm-up: torch.optim imports dynamo
    total = STARTS * len(RULES) * STEPS
    for name, surface in [("rosenbrock", make_surface("rosenbrock")),
                          ("quadratic", make_surface("quadratic", mu=1.0, L=20.0,
                                                     angle_deg=30.0))]:
        batched_sweep(surface)  # warm-up
        seconds = batched_sweep(surface)
        rate = total / seconds
        print(f"[{name}] batched sweep: {STARTS} starts x {len(RULES)} optimizers x {STEPS} "
              f"steps = {total:,} trajectory-steps in {seconds:.2f} s -> "
              f"{rate / 1e6:.2f} M trajectory-steps/s")
        per_step = torch_optim_loop(surface, args.sample_trajectories, args.sample_steps)
        print(f"[{name}] torch.optim loop: {per_step * 1e6:.1f} us per step "
              f"({len(RULES)} optimizers x {args.sample_trajectories} trajectories x "
              f"{args.sample_steps} steps, one step per call) -> the sweep would take "
              f"{per_step * total:,.0f} s")
        print(f"[{name}] speed-up: {rate * per_step:,.0f}x (target >= 100x)")

    params = OptimizersParams(mode="cloud", starts=STARTS, steps=STEPS)
    started = time.perf_counter()
    for _ in experiment.run(params, RunContext(seed=0, device="cpu")):
        pass
    seconds = time.perf_counter() - started
    print(f"[quadratic] the same sweep as a cloud run (streaming, statistics, checks): "
          f"{seconds:.2f} s -> {total / seconds / 1e6:.2f} M trajectory-steps/s")

    race = OptimizersParams(steps=STEPS)
    first_frame(race)  # warm-up
    latencies = [first_frame(race) for _ in range(5)]
    print(f"first frame of a default {STEPS:,}-step race: median "
          f"{statistics.median(latencies) * 1e3:.1f} ms, max {max(latencies) * 1e3:.1f} ms "
          f"of 5 (target < 100 ms)")


if __name__ == "__main__":
    main()
