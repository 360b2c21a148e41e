#!/usr/bin/env python
"""Per-step cost of applying each learned architecture and shipped optimizer, relative to optax Adam.

The model is an MLP, by default 784-1024-256-10 (about 1.07M parameters; ``--layers`` sets
another, e.g. 784,10000,10000,10 for 108M), softmax cross-entropy on a minibatch of 128 random
examples. For every optimizer two jitted functions are
timed: the optimizer update alone (``update`` + ``apply_updates`` on fixed gradients) and a
whole training step (loss, gradient, update). No meta-gradient: this is the cost a user pays to
train a model with a (trained) learned optimizer. Untrained meta-parameters are used; the cost
does not depend on their values. Compilation is excluded; repeats of all optimizers are
interleaved so that background load affects them alike; medians are reported.

Usage::

    python benchmarks/optimizer_step_cost.py [--repeats 7] [--steps 20] [--layers 784,1024,256,10] [--json out.json]

An optimizer that does not fit in the device's memory at that size is reported as such, not timed.
"""

from __future__ import annotations

import argparse
import json
import statistics

import jax
import jax.numpy as jnp
import optax
from harness import LoadCapture, cost_rows, environment, interleaved, peak_device_memory

import l2o
from l2o.optimizers import get_learned
from l2o.optimizers.untuned import UNTUNED

ARCHITECTURES = ("DM", "RNNProp", "ScaleBasic", "ScaleHierarchical", "AdafacMLP")
LAYERS = (784, 1024, 256, 10)


def init_mlp(key, layers=LAYERS):
    params = {}
    for i, (fan_in, fan_out) in enumerate(zip(layers[:-1], layers[1:])):
        key, sub = jax.random.split(key)
        params[f"layer{i}"] = {"w": jax.random.normal(sub, (fan_in, fan_out)) / fan_in**0.5, "b": jnp.zeros(fan_out)}
    return params


def loss_fn(params, images, labels):
    x = images
    for i in range(len(params)):
        layer = params[f"layer{i}"]
        x = x @ layer["w"] + layer["b"]
        if i < len(params) - 1:
            x = jax.nn.relu(x)
    return optax.softmax_cross_entropy_with_integer_labels(x, labels).mean()


def optimizers(names=("Adam",) + ARCHITECTURES) -> dict[str, optax.GradientTransformation]:
    """Adam, each architecture at its defaults, each shipped optimizer as users load it, and
    optax's Muon at 0.02 (``Muon``: the hand-designed optimizer an orthogonalizing one costs like)
    and the same with one Newton-Schulz step instead of five (``Muon1``: the least any optimizer
    that orthogonalizes each weight matrix's step once costs)."""
    result = {"Adam": optax.adam(1e-3)}
    for name in names[1:]:
        if name == "Muon":
            result[name] = UNTUNED["Muon"]()
            continue
        if name == "Muon1":
            result[name] = optax.contrib.muon(0.02, ns_steps=1)
            continue
        if name in l2o.pretrained.names():
            result[name] = l2o.load_optax(name)
            continue
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
    parser.add_argument("--layers", default=",".join(map(str, LAYERS)), help="MLP widths, input to output")
    parser.add_argument("--optimizers", default=",".join(("Adam",) + ARCHITECTURES + tuple(l2o.pretrained.names())),
                        help="Adam first, then the architectures and shipped optimizers (l2o pretrained) "
                        "to time (default: all of them)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    layers = tuple(int(width) for width in args.layers.split(","))
    names = tuple(args.optimizers.split(","))
    known = ARCHITECTURES + tuple(l2o.pretrained.names()) + ("Muon", "Muon1")
    if names[0] != "Adam" or not set(names[1:]) <= set(known):
        parser.error(f"--optimizers must be Adam followed by some of {', '.join(known)}")

    key_params, key_data = jax.random.split(jax.random.PRNGKey(0))
    params = init_mlp(key_params, layers)
    size = sum(leaf.size for leaf in jax.tree.leaves(params))
    images = jax.random.uniform(key_data, (128, layers[0]))
    labels = jax.random.randint(key_data, (128,), 0, layers[-1])
    grads = jax.grad(loss_fn)(params, images, labels)

    candidates, failed = {}, {}
    for name, tx in optimizers(names).items():
        def update_only(params, state, tx=tx):
            updates, state = tx.update(grads, state, params)
            return optax.apply_updates(params, updates), state

        def train_step(params, state, tx=tx):
            g = jax.grad(loss_fn)(params, images, labels)
            updates, state = tx.update(g, state, params)
            return optax.apply_updates(params, updates), state

        try:  # compiled and run once here: an optimizer too large for the device drops out
            for kind, fn in (("update", update_only), ("step", train_step)):
                candidates[name, kind] = stepping(jax.jit(fn), (params, tx.init(params)), args.steps)
                jax.block_until_ready(candidates[name, kind]())
        except Exception as error:  # XLA reports running out of memory as a runtime error
            if "RESOURCE_EXHAUSTED" not in str(error) and "out of memory" not in str(error).lower():
                raise
            failed[name] = "out of device memory"
            candidates = {key: call for key, call in candidates.items() if key[0] != name}

    with LoadCapture() as load:
        times = interleaved(candidates, args.repeats, warmup=0)
    medians = {key: statistics.median(values) / args.steps for key, values in times.items()}
    env = environment()
    print(f"model: MLP {'-'.join(map(str, layers))}, {size:,} parameters, batch 128; "
          f"{env['jax_backend']} ({env['processor']}, {env['cpu_count']} cores); "
          f"medians of {args.repeats} repeats x {args.steps} steps; {load.describe()}")
    rows = cost_rows(names, medians, failed)
    if args.json:
        with open(args.json, "w") as handle:
            figures = {"layers": layers, "parameters": size, "repeats": args.repeats, "steps": args.steps,
                       "rows": rows, "peak_device_memory_bytes": peak_device_memory(), "environment": env,
                       "load_average_1min": load.as_dict()}
            json.dump(figures, handle, indent=2)


if __name__ == "__main__":
    main()
