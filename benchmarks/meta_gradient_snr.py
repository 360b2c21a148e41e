#!/usr/bin/env python
"""How much of a meta-gradient estimate is signal: the cosine between independent estimates.

For a training configuration (a recipe of ``src/l2o/pretrained/recipes/`` or a run's
``config.json``) and meta-parameters ``theta``, ``--populations`` independent populations of
the configured estimator (e.g. PES with 8 antithetic pairs) each run ``--warmup`` truncations
at ``theta`` (so that PES's accumulated perturbations and the staggered runs are as in
training), then give one meta-gradient estimate each. With ``g_i = mu + n_i`` (independent
noise of total variance ``s2``), the expected cosine between two estimates is about
``|mu|^2 / (|mu|^2 + s2)``, so ``c / (1 - c)`` estimates the signal-to-noise ratio of one
estimate, and ``k`` times as many pairs would multiply it by ``k``.

Usage::

    L2O_DATA_DIR=../shared/data python benchmarks/meta_gradient_snr.py \\
        --config src/l2o/pretrained/recipes/muon-fastvelo.json --theta muon-fastvelo,runs/muon-untrained

``KEY=VALUE`` overrides change the configuration as ``l2o train`` takes them: more pairs
(``run/population=64``) should raise the signal-to-noise ratio in proportion, and
``estimator/name=truncated`` measures truncated BPTT's estimate (biased, but with none of
PES's sampling noise) at the same point, a control that the signal is there at all.
"""

from __future__ import annotations

import argparse
import itertools
import json

import jax
import jax.numpy as jnp
import numpy as np

import l2o
from l2o.config import TrainConfig
from l2o.meta import MetaTrainer
from l2o.train_settings import apply_overrides


def estimates(trainer: MetaTrainer, theta, populations: int, warmup: int, seed: int) -> np.ndarray:
    """``(populations, meta-parameters)``: one flattened estimate per independent population."""
    strategy, run = trainer.config.strategy, trainer.config.run
    estimator = trainer._estimator(strategy.unroll_length, strategy.num_steps)  # what training's meta-step uses
    grad = jax.jit(estimator.grad)
    rows = []
    for population in range(populations):
        key = jax.random.fold_in(jax.random.PRNGKey(seed), population)
        states = estimator.init_states(theta, key, run.population)
        for step in range(warmup + 1):
            gradient, states, _ = grad(theta, states, jax.random.fold_in(key, 1 + step))
        rows.append(np.concatenate([np.ravel(leaf) for leaf in jax.tree.leaves(gradient)]))
    return np.stack(rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="src/l2o/pretrained/recipes/muon-fastvelo.json")
    parser.add_argument("--theta", default="muon-fastvelo",
                        help="comma-separated run directories, shipped names, or `init` "
                             "(the configuration's own initial meta-parameters, epoch 0 of its run)")
    parser.add_argument("--populations", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=10, help="truncations before the estimate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="overrides of the configuration, as l2o train takes them "
                             "(run/population=64, estimator/name=truncated)")
    args = parser.parse_args(argv)
    with open(args.config) as file:
        config = apply_overrides(json.load(file), args.overrides)
    trainer = MetaTrainer(TrainConfig.from_dict(config))
    members = f"{trainer.config.estimator.name}, population {trainer.config.run.population}"
    print(f"| theta | estimates | mean pairwise cosine [min, max] | signal-to-noise of one estimate ({members}) |")
    print("|---|---:|---:|---:|")
    for name in args.theta.split(","):
        theta = trainer.initial_theta() if name == "init" else l2o.load(name)[1]
        theta = jax.tree.map(jnp.asarray, theta)
        rows = estimates(trainer, theta, args.populations, args.warmup, args.seed)
        unit = rows / np.linalg.norm(rows, axis=1, keepdims=True)
        cosines = np.array([unit[i] @ unit[j] for i, j in itertools.combinations(range(len(unit)), 2)])
        mean = cosines.mean()
        print(f"| {name} | {len(rows)} | {mean:.3f} [{cosines.min():.3f}, {cosines.max():.3f}] | "
              f"{mean / (1 - mean):.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
