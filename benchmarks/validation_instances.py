#!/usr/bin/env python
"""Which validation instances decide a meta-training's validation score.

Meta-training selects its best meta-parameters by the validation score of a configuration
(:func:`l2o.metrics.validation_score`: by default the log10 of the *mean* final loss over the
fixed validation instances). On a distribution of datasets the instances' final losses differ
by orders of magnitude, so a few instances can make up most of the mean. For a configuration
(a recipe of ``src/l2o/pretrained/recipes/`` or a run's ``config.json``) and some optimizers,
this runs every validation instance exactly as validation does and prints, per dataset of the
distribution, the instances' mean final loss and their share of the overall mean; then a score
that weighs every instance alike: the mean over instances of the log10 ratio of each final loss
to the first optimizer's on the same instance (both floored at ``--floor``).

Usage::

    L2O_DATA_DIR=../shared/data python benchmarks/validation_instances.py \\
        --config src/l2o/pretrained/recipes/muon-fastvelo.json --optimizers muon-fastvelo,Adam@1e-3,Adam@1e-2

An optimizer is what ``l2o benchmark`` takes (a run directory, a shipped name, a baseline at
its default learning rate) or ``BASELINE@RATE`` for a baseline at another rate; ``SPEC~cosine``
(or ``~linear``) is that optimizer with its steps scaled from 1 to 0 over the run, as
``l2o benchmark --schedule`` runs it.
"""

from __future__ import annotations

import argparse
import json

import jax
import numpy as np

from l2o.benchmark import resolve_optimizer, run_schedule
from l2o.config import TrainConfig
from l2o.errors import L2OError
from l2o.meta import MetaTrainer
from l2o.meta.validation import final_losses
from l2o.metrics import validation_score
from l2o.optimizers import get_baseline
from l2o.optimizers.multiplier import with_learning_rate
from l2o.tasks.image_families import FAST_VELO_DATASETS
from l2o.train_settings import apply_overrides


def transformation(spec: str, num_steps: int):
    """``(label, optax transformation)`` of an optimizer spec (see the module docstring)."""
    if "~" in spec:
        base, _, schedule = spec.partition("~")
        try:
            return spec, with_learning_rate(transformation(base, num_steps)[1], run_schedule(schedule, num_steps))
        except L2OError as error:
            raise SystemExit(f"{spec!r}: {error}") from None
    if "@" in spec:
        name, _, rate = spec.partition("@")
        try:
            return spec, get_baseline(name)(float(rate))
        except ValueError:
            raise SystemExit(f"{spec!r}: the rate after @ must be a number, e.g. Adam@1e-3") from None
    label, tx, _ = resolve_optimizer(spec)
    return label, tx


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="src/l2o/pretrained/recipes/muon-fastvelo.json")
    parser.add_argument("--optimizers", default="muon-fastvelo,Adam@1e-3")
    parser.add_argument("--num_steps", type=int, default=None, help="default: the configuration's validation horizon")
    parser.add_argument("--problem", type=int, default=0, help="which validation problem (configurations with several)")
    parser.add_argument("--floor", type=float, default=1e-2,
                        help="losses below it count as it in the per-instance ratios (memorized instances reach 0)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="overrides of the configuration")
    args = parser.parse_args(argv)
    try:
        with open(args.config) as file:
            config = TrainConfig.from_dict(apply_overrides(json.load(file), args.overrides))
        num_steps = args.num_steps or config.strategy.validation_steps or config.strategy.num_steps
        optimizers = [transformation(spec, num_steps) for spec in args.optimizers.split(",")]
        validation = MetaTrainer(config).validation
    except (L2OError, OSError) as error:
        raise SystemExit(f"error: {error}") from None
    if not 0 <= args.problem < len(validation.tasks):
        raise SystemExit(f"error: --problem {args.problem}: the configuration validates on {len(validation.tasks)} "
                         f"problem(s); pass 0 to {len(validation.tasks) - 1}")
    task, problems = validation.tasks[args.problem], validation.instances[args.problem]
    groups = np.asarray(problems[0]["dataset"]) if "dataset" in problems[0] else np.zeros(len(problems[2]), int)
    names = config.problem.options.get("datasets", FAST_VELO_DATASETS) if "dataset" in problems[0] else ("all",)

    columns = {label: np.asarray(jax.jit(final_losses, static_argnums=(1, 3))(task, tx, problems, num_steps))
               for label, tx in optimizers}
    print(f"Final training loss after {num_steps} steps on the {len(groups)} validation instances of {task.name} "
          f"({args.config}): mean per dataset (share of the overall mean)\n")
    print("| dataset (instances) | " + " | ".join(columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for group in np.unique(groups):
        members = groups == group
        cells = [f"{losses[members].mean():.3f} ({losses[members].sum() / losses.sum():.0%})"
                 for losses in columns.values()]
        print(f"| {names[group]} ({members.sum()}) | " + " | ".join(cells) + " |")
    scores = [validation_score(losses, config.meta_loss.log_objective) for losses in columns.values()]
    print("| validation score | " + " | ".join(f"{score:.3f}" for score in scores) + " |")
    reference = np.maximum(next(iter(columns.values())), args.floor)
    ratios = [np.mean(np.log10(np.maximum(losses, args.floor) / reference)) for losses in columns.values()]
    print(f"| mean over instances of log10(final loss / {next(iter(columns))}'s), both floored at {args.floor:g} | "
          + " | ".join(f"{ratio:.3f}" for ratio in ratios) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
