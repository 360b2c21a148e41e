#!/usr/bin/env python
"""How much of the benchmark's speedup a learning-rate schedule alone is worth.

The benchmark (:mod:`l2o.benchmark`) judges an optimizer against Adam at a constant, tuned
learning rate. An optimizer that knows its budget can anneal its steps towards the end, which a
constant rate cannot. This script measures that headroom with no learning at all: Adam whose
rate decays over the budget (cosine or linear, to zero), its peak rate tuned per task on the
benchmark's *tuning* instances (the grid rates within ``--around`` half-decades of constant tuned
Adam's rate), then run on the benchmark's *test* instances and scored exactly as the benchmark
scores any optimizer: speedup over constant tuned Adam, normalized final loss, IQM with its
bootstrap 95% interval over tasks and seeds.

Usage::

    python benchmarks/schedule_headroom.py --tasks quadratic,mnist --data_dir ../shared/data

Constant tuned Adam's curves come from the benchmark's cache (computed when missing).
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import optax

from l2o.benchmark import (
    BENCHMARK_TASKS,
    RUN_SCHEDULES,
    BenchmarkSettings,
    default_cache_dir,
    grid_losses,
    instances,
    task_options,
    tuned_adam,
)
from l2o.benchmark_metrics import ADAM_GRID, iqm, iqm_interval, normalized_final_loss, speedup
from l2o.evaluate import run_trajectories
from l2o.tasks import get_task


def scheduled_adam(schedule: str, peak, steps: int) -> optax.GradientTransformation:
    """Adam whose rate decays from ``peak`` to zero over ``steps`` by ``schedule``."""
    return optax.adam(RUN_SCHEDULES[schedule](peak, steps))


def headroom(name: str, schedule: str, around: int, settings: BenchmarkSettings, data_dir: str | None) -> dict:
    """One task: the tuned peak rate, and per test seed the speedup and normalized final loss."""
    options = task_options(name, data_dir)
    task = get_task(name, **options)
    tuned = tuned_adam(task, name, options, settings, default_cache_dir())
    centre = ADAM_GRID.index(tuned.learning_rate)
    peaks = np.array(ADAM_GRID[max(0, centre - around): centre + around + 1])
    losses = grid_losses(task, instances(task, settings, tuning=True), settings, peaks,
                         lambda peak: scheduled_adam(schedule, peak, settings.num_steps))
    losses = np.nan_to_num(losses, nan=np.inf)
    peak = float(peaks[int(np.argmin(losses))])
    curves = run_trajectories(task, scheduled_adam(schedule, peak, settings.num_steps), instances(task, settings),
                              settings.num_steps, settings.parallel_runs)[0]
    window = settings.smoothing
    return {"constant_tuned_rate": tuned.learning_rate, "peak_rate": peak,
            "speedup": [speedup(c, r, window) for c, r in zip(curves, tuned.curves)],
            "normalized_final_loss": [normalized_final_loss(c, r, window) for c, r in zip(curves, tuned.curves)]}


def seed_interval(values, samples: int = 2000) -> tuple[float, float]:
    """95% bootstrap interval of the mean of one task's per-seed values."""
    values = np.asarray(values, np.float64)
    means = np.random.default_rng(0).choice(values, (samples, len(values))).mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", default=",".join(BENCHMARK_TASKS))
    parser.add_argument("--schedules", default="cosine,linear")
    parser.add_argument("--around", type=int, default=2, help="half-decades of peak rates each side of the tuned rate")
    parser.add_argument("--num_steps", type=int, default=2000)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)
    settings = BenchmarkSettings(num_steps=args.num_steps, seeds=args.seeds)
    schedules = args.schedules.split(",")
    unknown = [s for s in schedules if s not in RUN_SCHEDULES]
    if unknown:
        parser.error(f"unknown schedule {unknown[0]!r}; choose from {', '.join(RUN_SCHEDULES)}")
    results = {s: {} for s in schedules}
    print("| task | schedule | constant tuned rate | peak rate | speedup [95% CI over seeds] | norm. loss |\n"
          "|---|---|---:|---:|---:|---:|")
    for name in args.tasks.split(","):
        for schedule in schedules:
            row = results[schedule][name] = headroom(name, schedule, args.around, settings, args.data_dir)
            low, high = seed_interval(row["speedup"])
            print(f"| {name} | {schedule} | {row['constant_tuned_rate']:.3g} | {row['peak_rate']:.3g} | "
                  f"{np.mean(row['speedup']):.2f} [{low:.2f}, {high:.2f}] | "
                  f"{np.mean(row['normalized_final_loss']):.3f} |", flush=True)
            if args.json:  # after every task, so that an interrupted run keeps what it measured
                with open(args.json, "w") as out:
                    json.dump({"settings": vars(args), "results": results}, out, indent=1)
    for schedule in schedules:
        for field in ("speedup", "normalized_final_loss"):
            values = np.array([results[schedule][name][field] for name in results[schedule]])
            low, high = iqm_interval(values)
            print(f"{schedule}: IQM {field} {iqm(values):.2f} [{low:.2f}, {high:.2f}]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
