#!/usr/bin/env python
"""How far meta-training moved a learned optimizer from its untrained prior.

A diagnostic for optimizers that learn a correction to a hand-designed update (AdafacMLP with
``muon_prior`` or ``adam_prior``, whose untrained network outputs nothing): on one task
instance the trained optimizer trains from an initialization, and at every step its prior is
given the same gradient and parameters, so that both keep the same statistics and differ only
by what meta-training changed. Per step, over all parameters: the relative difference of the
updates ``||u_trained - u_prior|| / ||u_prior||`` and their cosine; printed as medians over
the early steps and over the rest, with the training loss at the end.

Usage::

    L2O_DATA_DIR=../shared/data python benchmarks/learned_correction.py \\
        --pairs runs/fv-muon-lr3e-3:runs/muon-untrained --tasks fast_velo,mnist --steps 2000

A pair is ``TRAINED:PRIOR``, each a run directory, saved optimizer or shipped name (as
``l2o.load`` takes it); both must be the same optimizer definition.
"""

from __future__ import annotations

import argparse
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax

import l2o
from l2o.tasks import get_task


def load_pair(trained: str, prior: str) -> tuple[optax.GradientTransformation, optax.GradientTransformation]:
    (lopt, theta), (prior_lopt, prior_theta) = l2o.load(trained), l2o.load(prior)
    if repr(lopt) != repr(prior_lopt):
        raise SystemExit(f"{trained} and {prior} are different optimizers: {lopt!r} and {prior_lopt!r}")
    return lopt.transform(theta), prior_lopt.transform(prior_theta)


def differences(task, trained, prior, steps: int, seed: int) -> tuple[np.ndarray, np.ndarray, float]:
    """``(relative difference (steps,), cosine (steps,), final training loss)`` along the trained
    optimizer's run on one instance of ``task``."""
    inst = task.sample(jax.random.PRNGKey(seed))
    params = task.init(jax.random.PRNGKey(seed + 1), inst)
    flat = lambda tree: jnp.concatenate([jnp.ravel(leaf) for leaf in jax.tree.leaves(tree)])

    @jax.jit
    def step(params, states, key):
        loss, grads = jax.value_and_grad(task.loss)(params, inst, key)
        updates, trained_state = trained.update(grads, states[0], params)
        prior_updates, prior_state = prior.update(grads, states[1], params)
        u, p = flat(updates), flat(prior_updates)
        relative = jnp.linalg.norm(u - p) / jnp.linalg.norm(p)
        cosine = jnp.vdot(u, p) / (jnp.linalg.norm(u) * jnp.linalg.norm(p))
        return optax.apply_updates(params, updates), (trained_state, prior_state), loss, relative, cosine

    states, rows = (trained.init(params), prior.init(params)), []
    for index in range(steps):
        params, states, loss, relative, cosine = step(params, states, jax.random.PRNGKey(10_000 + index))
        rows.append((float(relative), float(cosine)))
    final = float(task.loss(params, inst, jax.random.PRNGKey(10_000 + steps)))
    relative, cosine = np.array(rows).T
    return relative, cosine, final


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", default="muon-fastvelo:runs/muon-untrained", help="TRAINED:PRIOR, comma-separated")
    parser.add_argument("--tasks", default="fast_velo,mnist", help="problem or benchmark task names, comma-separated")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--early", type=int, default=100, help="the first this many steps are reported apart")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    data_dir = os.environ.get("L2O_DATA_DIR")
    print(f"| task | trained | prior | median rel. difference, steps < {args.early} | after | "
          f"median cosine, steps < {args.early} | after | final loss |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for name in args.tasks.split(","):
        task = get_task(name, **({"data_dir": data_dir} if data_dir and name != "quadratic" else {}))
        for pair in args.pairs.split(","):
            trained_name, prior_name = pair.split(":")
            trained, prior = load_pair(trained_name, prior_name)
            relative, cosine, final = differences(task, trained, prior, args.steps, args.seed)
            early, late = slice(0, args.early), slice(args.early, None)
            print(f"| {name} | {trained_name} | {prior_name} | {np.median(relative[early]):.3f} | "
                  f"{np.median(relative[late]):.3f} | {np.median(cosine[early]):.3f} | "
                  f"{np.median(cosine[late]):.3f} | {final:.4g} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
