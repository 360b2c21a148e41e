#!/usr/bin/env python
"""Hand-designed optimizers from optax's contributed set, at their published default settings
(no tuning), through the benchmark protocol of `l2o benchmark` (:func:`l2o.benchmark.benchmark`).

They are what a learned optimizer meant to need no tuning must also beat
(:data:`l2o.optimizers.untuned.UNTUNED`: Muon at optax's defaults, Prodigy and D-Adapt AdamW at
their multiplier 1). ``l2o benchmark Muon`` runs one of them with the full report; this script
prints a table of several side by side.

Usage::

    python benchmarks/optax_baselines.py --optimizers muon --tasks quadratic,mnist --data_dir ../shared/data

Tuned Adam's curves come from the benchmark's cache (computed when missing).
"""

from __future__ import annotations

import argparse
import json

from l2o.benchmark import BENCHMARK_TASKS, BenchmarkSettings, benchmark, default_cache_dir
from l2o.optimizers.untuned import UNTUNED, untuned_name


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--optimizers", default=",".join(UNTUNED), help="any case")
    parser.add_argument("--tasks", default=",".join(BENCHMARK_TASKS))
    parser.add_argument("--num_steps", type=int, default=2000)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)
    requested = args.optimizers.split(",")
    names = [untuned_name(name) for name in requested]
    if None in names:
        parser.error(f"unknown optimizer {requested[names.index(None)]!r}; choose from {', '.join(UNTUNED)}")
    settings = BenchmarkSettings(num_steps=args.num_steps, seeds=args.seeds)
    report = {}
    print("| optimizer | task | speedup | norm. loss | Adam 1e-3 speedup |\n|---|---|---:|---:|---:|")
    for name in names:
        result = benchmark(UNTUNED[name](), name, tuple(args.tasks.split(",")), settings, args.data_dir,
                           default_cache_dir(), progress=True)
        for task in result.tasks:
            print(f"| {name} | {task.name} | {task.speedup.mean():.2f} | {task.normalized_final_loss.mean():.3f} | "
                  f"{task.adam_default_speedup.mean():.2f} |", flush=True)
        speedups, losses = result.aggregate("speedup"), result.aggregate("normalized_final_loss")
        interval = lambda aggregate: f"{aggregate['iqm']:.2f} [{aggregate['ci95'][0]:.2f}, {aggregate['ci95'][1]:.2f}]"
        print(f"| {name} | **IQM [95% CI]** | {interval(speedups)} | {interval(losses)} | |")
        report[name] = {"iqm_speedup": speedups, "iqm_normalized_final_loss": losses,
                        "tasks": {task.name: {"speedup": task.speedup.tolist(),
                                              "normalized_final_loss": task.normalized_final_loss.tolist()}
                                  for task in result.tasks}}
        if args.json:
            with open(args.json, "w") as out:
                json.dump({"settings": vars(args), "results": report}, out, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
