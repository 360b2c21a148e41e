#!/usr/bin/env python
"""How large an optimizer's steps are, relative to the parameters, along one training run.

A diagnostic for learned optimizers that transfer badly: on one benchmark task instance, each
optimizer trains from the same initialization on the same minibatches, and at the logged steps
the script prints the training loss and, per weight tensor (two or more axes), the ratio
``rms(update) / rms(parameters)``, reported as its median over the tensors (and its range).

Usage::

    L2O_DATA_DIR=../shared/data python benchmarks/update_scale.py \\
        --task ImageMLPAE_Mnist_128x32x128_bs128 --optimizers adafac-fastvelo,adam:3e-3 --steps 1000

An optimizer is a shipped name or run directory (as ``l2o.load_optax`` takes it) or
``adam:LEARNING_RATE``.
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


def make_optimizer(spec: str) -> optax.GradientTransformation:
    if spec.lower().startswith("adam:"):
        return optax.adam(float(spec.split(":", 1)[1]))
    return l2o.load_optax(spec)


def relative_step_sizes(task, tx, steps: int, logged: set[int], seed: int) -> list[tuple[int, float, np.ndarray]]:
    """``(step, loss, ratios)`` at the ``logged`` steps; ``ratios`` ``(tensors,)`` of the weight tensors."""
    inst = task.sample(jax.random.PRNGKey(seed))
    params = task.init(jax.random.PRNGKey(seed + 1), inst)
    rms = lambda x: jnp.sqrt(jnp.mean(jnp.square(x)))

    @jax.jit
    def step(params, state, key):
        loss, grads = jax.value_and_grad(task.loss)(params, inst, key)
        updates, state = tx.update(grads, state, params)
        ratios = jnp.stack([rms(u) / rms(p) for u, p in zip(jax.tree.leaves(updates), jax.tree.leaves(params))
                            if p.ndim >= 2])
        return optax.apply_updates(params, updates), state, loss, ratios

    state, rows = tx.init(params), []
    for index in range(steps):
        params, state, loss, ratios = step(params, state, jax.random.PRNGKey(10_000 + seed * steps + index))
        if index in logged:
            rows.append((index, float(loss), np.asarray(ratios)))
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="ImageMLPAE_Mnist_128x32x128_bs128", help="a benchmark task's name")
    parser.add_argument("--optimizers", default="adafac-fastvelo,adam:3e-3", help="comma-separated")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--log", default="0,10,50,100,300,600,999", help="steps to report, comma-separated")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    data_dir = os.environ.get("L2O_DATA_DIR")
    task = get_task(args.task, **({"data_dir": data_dir} if data_dir and args.task != "quadratic" else {}))
    logged = {int(step) for step in args.log.split(",")}
    print(f"{args.task}, seed {args.seed}: training loss and rms(update) / rms(parameters) over its weight "
          "tensors (median [min, max])")
    for spec in args.optimizers.split(","):
        for index, loss, ratios in relative_step_sizes(task, make_optimizer(spec), args.steps, logged, args.seed):
            print(f"{spec:>18} step {index:>6}  loss {loss:9.4f}  relative step {np.median(ratios):.1e} "
                  f"[{ratios.min():.1e}, {ratios.max():.1e}]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
