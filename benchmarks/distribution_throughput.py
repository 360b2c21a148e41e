#!/usr/bin/env python
"""PES meta-training throughput on a task distribution with augmentation.

Times whole meta-iterations (PES estimate over the population, clip, Adam) of the trainer's own
compiled meta-step on ``fast_velo`` (VeLO's 8x8 MLP distribution) with tensor-level
reparameterization, against the single-task stand-in of issue 16 (the 64-32-10 ReLU MLP,
batch 64, on digits, no augmentation), in one run with interleaved repeats. With ``--families``,
also the families the recipes add beside ``fast_velo`` (8x8 grey images, the same augmentation):
64-128-128-10 MLPs, 64-128-32-128-64 autoencoders and 16x32 convnets, ReLU or tanh. The figure
is *inner steps per second*: ``2 * pairs * truncation`` inner steps per meta-iteration over its
wall time. Compilation is excluded.

Usage::

    L2O_DATA_DIR=../shared/data python benchmarks/distribution_throughput.py [--pairs 8] [--unroll 50] [--families]
"""

from __future__ import annotations

import argparse
import json

from harness import LoadCapture, environment, interleaved, medians, meta_steps

from l2o.config import TrainConfig
from l2o.meta import MetaTrainer
from l2o.presets import preset_config

# Families beside fast_velo in the recipes (src/l2o/pretrained/recipes/), on its datasets and image size.
WIDER_FAMILIES = {
    "MLP 64-128-128-10, ReLU or tanh": ("image_mlp_family", {"layers": [128, 128]}),
    "autoencoder 64-128-32-128-64, ReLU or tanh": ("image_mlp_family", {"layers": [128, 32, 128], "autoencoder": True}),
    "convnet 16x32, ReLU or tanh": ("image_conv_family", {"channels": [16, 32]}),
}


def _trainer_steps(trainer: MetaTrainer, count: int):
    """A call that runs ``count`` meta-iterations of ``trainer`` from its own fresh state."""
    progress = trainer.initial_progress()
    current = trainer.plan(0)
    step = trainer.meta_step(current.unroll_length, current.horizon)
    return meta_steps(step, [progress.theta, progress.meta_opt_state, progress.states], count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=8, help="antithetic pairs (2x inner runs)")
    parser.add_argument("--unroll", type=int, default=50, help="inner steps per truncation")
    parser.add_argument("--optimizer", default="AdafacMLP", help="learned architecture")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--meta-steps", dest="meta_steps", type=int, default=3)
    parser.add_argument("--families", action="store_true", help="also the MLP, autoencoder and convnet families")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    common = dict(optimizer=args.optimizer, n_samplings=args.pairs, unroll_length=args.unroll)
    setups = {
        "fast_velo + tensor reparameterization": preset_config("fast_velo", **common),
        "digits 64-32-10 ReLU, batch 64, no augmentation": preset_config(
            "fast_velo", problem_options={"datasets": ["digits"]}, augmentation=None, **common),
    }
    if args.families:
        base = setups["fast_velo + tensor reparameterization"].to_dict()
        for name, (problem, options) in WIDER_FAMILIES.items():
            base["problem"].update(name=problem, options={**options, "activations": ["relu", "tanh"]})
            setups[name + " + tensor reparameterization"] = TrainConfig.from_dict(base)
    runs = {name: _trainer_steps(MetaTrainer(config), args.meta_steps) for name, config in setups.items()}
    with LoadCapture() as load:
        seconds = medians(interleaved(runs, args.repeats, warmup=1))
    inner_steps = 2 * args.pairs * args.unroll * args.meta_steps
    rates = {name: inner_steps / value for name, value in seconds.items()}
    print(f"PES, {args.optimizer}, {args.pairs} pairs, truncation {args.unroll}; median of {args.repeats} x "
          f"{args.meta_steps} meta-iterations; {load.describe()}")
    for name, rate in rates.items():
        print(f"  {name:<72} {rate:>10,.0f} inner steps/s")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"args": vars(args), "inner_steps_per_s": rates, "environment": environment(),
                       "load_average_1min": load.as_dict()}, handle, indent=2)


if __name__ == "__main__":
    main()
