#!/usr/bin/env python
"""Per-step cost of applying each learned architecture, relative to optax Adam.

The model is an MLP 784-1024-256-10 (about 1.07M parameters, softmax cross-entropy on a
minibatch of 128 random MNIST-shaped examples). For every optimizer two jitted functions are
timed: the optimizer update alone (``update`` + ``apply_updates`` on fixed gradients) and a
whole training step (loss, gradient, update). No meta-gradient: this is the cost a user pays to
train a model with a (trained) learned optimizer. Untrained meta-parameters are used; the cost
does not depend on their values. Compilation is excluded; repeats of all optimizers are
interleaved so that background load affects them alike; medians are reported.

Usage::

    python benchmarks/optimizer_step_cost.py [--repeats 7] [--steps 20] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics

import jax
import jax.numpy as jnp
import optax
from harness import LoadCapture, environment, interleaved

from l2o.optimizers import get_learned

ARCHITECTURES = ("DM", "RNNProp", "ScaleBasic", "ScaleHierarchical", "AdafacMLP")
LAYERS = (784, 1024, 256, 10)


def init_mlp(key):
    params = {}
    for i, (fan_in, fan_out) in enumerate(zip(LAYERS[:-1], LAYERS[1:])):
        key, sub = jax.random.split(key)
        params[f"layer{i}"] = {"w": jax.random.normal(sub, (fan_in, fan_out)) / fan_in**0.5, "b": jnp.zeros(fan_out)}
    return params


def loss_fn(params, images, labels):
    x = images
    for i in range(len(LAYERS) - 1):
        layer = params[f"layer{i}"]
        x = x @ layer["w"] + layer["b"]
        if i < len(LAYERS) - 2:
            x = jax.nn.relu(x)
    return optax.softmax_cross_entropy_with_integer_labels(x, labels).mean()


def optimizers() -> dict[str, optax.GradientTransformation]:
    result = {"Adam": optax.adam(1e-3)}
    for name in ARCHITECTURES:
        lopt = get_learned(name)
        result[name] = lopt.transform(lopt.init(jax.random.PRNGKey(0)))
    return result


def stepping(fn, carry, steps: int):
    """A call that applies ``fn`` ``steps`` times from ``carry`` (kept between calls)."""
    box = [carry]

    def run():
        for _ in range(steps):
            box[0] = fn(*box[0])
        return box[0]

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=20, help="steps per timed repeat")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()

    key_params, key_data = jax.random.split(jax.random.PRNGKey(0))
    params = init_mlp(key_params)
    size = sum(leaf.size for leaf in jax.tree.leaves(params))
    images = jax.random.uniform(key_data, (128, 784))
    labels = jax.random.randint(key_data, (128,), 0, 10)
    grads = jax.grad(loss_fn)(params, images, labels)

    candidates = {}
    for name, tx in optimizers().items():
        def update_only(params, state, tx=tx):
            updates, state = tx.update(grads, state, params)
            return optax.apply_updates(params, updates), state

        def train_step(params, state, tx=tx):
            g = jax.grad(loss_fn)(params, images, labels)
            updates, state = tx.update(g, state, params)
            return optax.apply_updates(params, updates), state

        for kind, fn in (("update", update_only), ("step", train_step)):
            candidates[name, kind] = stepping(jax.jit(fn), (params, tx.init(params)), args.steps)

    with LoadCapture() as load:  # the first (untimed) call of each compiles it
        times = interleaved(candidates, args.repeats, warmup=1)
    medians = {key: statistics.median(values) / args.steps for key, values in times.items()}
    env = environment()
    print(f"model: MLP {'-'.join(map(str, LAYERS))}, {size:,} parameters, batch 128; "
          f"{env['jax_backend']} ({env['processor']}, {env['cpu_count']} cores); "
          f"medians of {args.repeats} repeats x {args.steps} steps; {load.describe()}")
    print(f"{'optimizer':<18} {'update ms':>10} {'x Adam':>8} {'train step ms':>14} {'x Adam':>8}")
    rows = []
    for name in ("Adam",) + ARCHITECTURES:
        update, step = medians[name, "update"], medians[name, "step"]
        row = {"optimizer": name, "update_ms": 1e3 * update, "update_ratio": update / medians["Adam", "update"],
               "step_ms": 1e3 * step, "step_ratio": step / medians["Adam", "step"]}
        rows.append(row)
        print(f"{name:<18} {row['update_ms']:>10.2f} {row['update_ratio']:>8.2f} "
              f"{row['step_ms']:>14.2f} {row['step_ratio']:>8.2f}")
    if args.json:
        with open(args.json, "w") as handle:
            figures = {"parameters": size, "repeats": args.repeats, "steps": args.steps, "rows": rows,
                       "environment": env, "load_average_1min": load.as_dict()}
            json.dump(figures, handle, indent=2)


if __name__ == "__main__":
    main()
