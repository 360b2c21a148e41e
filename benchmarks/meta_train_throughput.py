#!/usr/bin/env python
"""Meta-training throughput of l2o (JAX) against a PyTorch-eager reference of the same math.

Throughput is measured in *inner steps per second*: population members x unroll steps per
second of wall time, for whole meta-iterations (truncated unroll, meta-gradient, global-norm
clipping and the Adam update of the LSTM's weights). Compilation is not timed: each
implementation is warmed up first. Repeats of the two implementations are interleaved, so
that background load affects both alike; the median of the repeats is reported.

Shapes (DeepMind's "learning to learn" problems, coordinatewise deep LSTM (20, 20), unroll 20):

* ``quadratic``: 10 dims x batch 128 per instance, population ``--quadratic-population`` (8).
* ``mlp``: MLP 784-20-10, sigmoid, softmax cross-entropy, minibatch 128 drawn with replacement
  from random data of MNIST's shape, population ``--mlp-population`` (1).

The JAX side is l2o's own API (``TruncatedBPTT`` + ``make_meta_step``); the torch side is
``benchmarks/torch_reference.py``. ``--check`` verifies that both compute the same meta-loss,
meta-gradient and meta-update on identical weights, states and minibatches, then exits.

Usage::

    python benchmarks/meta_train_throughput.py [--repeats 5] [--meta-steps 3] [--json out.json]
    python benchmarks/meta_train_throughput.py --check
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

import l2o.meta
import l2o.optimizers
import l2o.tasks
from l2o.meta import TruncatedBPTT, make_meta_step
from l2o.meta.truncated import truncated_bptt_loss

sys.path.insert(0, str(Path(__file__).resolve().parent))

LSTM_LAYERS = (20, 20)
NUM_FEATURES = 2  # LogAndSign
BATCH = 128
QUAD_DIMS = 10
MLP_SIZES = (784, 20, 10)


def import_torch():
    """The torch reference, or None (with a hint) when torch is not installed."""
    try:
        import torch  # noqa: F401
        import torch_reference
    except ImportError as error:  # torch is an optional extra
        print(f"torch not available ({error}); install it with `pip install -e '.[bench]'`.")
        return None, None
    return torch, torch_reference


# --------------------------------------------------------------------------------------------
# The two implementations


def make_lopt():
    return l2o.optimizers.DM(layers=LSTM_LAYERS, preprocess="log_sign", output_scale=0.1)


def make_meta_optimizer():
    return optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-3))


# Benchmark shapes: the quadratic, and the MNIST-shaped MLP on random data or on MNIST itself.
MLP_DATASETS = {"mlp": "random", "mnist": "mnist"}


def make_task(shape: str):
    if shape == "quadratic":
        return l2o.tasks.quadratic(num_dims=QUAD_DIMS, batch_size=BATCH)
    return l2o.tasks.mlp_classifier(
        layers=MLP_SIZES[1:-1], activation="sigmoid", batch_size=BATCH, dataset=MLP_DATASETS[shape]
    )


def mlp_data(shape: str):
    """The training split ``mlp_classifier`` draws from, flattened: ``(N, 784)``, ``(N,)``."""
    data = l2o.tasks.load_dataset(MLP_DATASETS[shape])
    return data.train_images.reshape(len(data.train_labels), -1), data.train_labels


def sampling_seconds(shape: str, population: int, unroll: int, meta_steps: int, repeats: int) -> float:
    """Median time of the minibatch sampling alone, at the volume of ``meta_steps`` meta-steps.

    Each inner step of a truncation draws two minibatches (gradient and post-update loss), as
    l2o.meta.unroll does: a ``randint`` of ``BATCH`` indices and a gather of those rows.
    """
    images, labels = (jnp.asarray(a) for a in mlp_data(shape))

    @jax.jit
    def draw_all(key):
        def body(total, key):
            index = jax.random.randint(key, (2, BATCH), 0, labels.shape[0])
            return total + jnp.sum(images[index][..., 0]) + jnp.sum(labels[index]), None

        keys = jax.random.split(key, population * unroll * meta_steps)
        return jax.lax.scan(body, jnp.zeros(()), keys)[0]

    draw_all(jax.random.PRNGKey(0)).block_until_ready()
    times = []
    for repeat in range(repeats):
        start = time.perf_counter()
        draw_all(jax.random.PRNGKey(repeat)).block_until_ready()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


class JaxSetup:
    """l2o's jitted meta-step with its initial meta-parameters and population states."""

    def __init__(self, shape: str, population: int, unroll: int, horizon: int, seed: int):
        self.shape, self.population = shape, population
        self.task = make_task(shape)
        self.lopt = make_lopt()
        key = jax.random.PRNGKey(seed)
        self.theta = self.lopt.init(jax.random.fold_in(key, 0))
        self.meta_optimizer = make_meta_optimizer()
        self.meta_opt_state = self.meta_optimizer.init(self.theta)
        estimator = TruncatedBPTT(self.task, self.lopt, unroll_length=unroll, horizon=horizon)
        self.step = make_meta_step(estimator, self.meta_optimizer)
        # The loss whose gradient the estimator takes, for --check.
        self.population_loss = truncated_bptt_loss(self.task, self.lopt, unroll_length=unroll, horizon=horizon)
        self.states = estimator.init_states(self.theta, jax.random.fold_in(key, 1), population)
        self.key = jax.random.fold_in(key, 2)  # unused by truncated BPTT

    def run(self, meta_steps: int) -> None:
        theta, opt_state, states = self.theta, self.meta_opt_state, self.states
        for _ in range(meta_steps):
            theta, opt_state, states, metrics = self.step(theta, opt_state, states, self.key)
        jax.block_until_ready((theta, opt_state, states, metrics))
        self.theta, self.meta_opt_state, self.states = theta, opt_state, states
        self.metrics = metrics


def flat_params(states) -> np.ndarray:
    """Population parameters ``(P, N)`` in ravel_pytree order."""
    return np.asarray(jax.vmap(lambda p: ravel_pytree(p)[0])(states.params))


def make_torch_trainer(torch_reference, setup: JaxSetup, unroll: int, horizon: int, seed: int):
    """The torch reference, started from the same weights, instances and inner states."""
    if setup.shape == "quadratic":
        task = torch_reference.TorchQuadratic(num_dims=QUAD_DIMS, batch_size=BATCH)
    else:
        import torch

        images, labels = mlp_data(setup.shape)
        task = torch_reference.TorchMLP(
            torch.as_tensor(images), torch.as_tensor(labels), layers=MLP_SIZES[1:-1], batch_size=BATCH
        )
    net = torch_reference.TorchDM(LSTM_LAYERS, k=5.0, output_scale=0.1, forget_bias=1.0)
    net.load_flax(setup.theta)
    trainer = torch_reference.TorchMetaTrainer(
        task, net, setup.population, unroll_length=unroll, horizon=horizon, seed=seed
    )
    load_jax_states(trainer, setup.states)
    return trainer


def load_jax_states(trainer, states) -> None:
    inst = {name: np.asarray(value) for name, value in states.inst.items()} if states.inst else None
    trainer.load_state(
        flat_params(states),
        [(np.asarray(h), np.asarray(c)) for h, c in states.opt_state.hidden],
        inst,
        np.asarray(states.step),
    )


# --------------------------------------------------------------------------------------------
# FLOPs


def coordinates(shape: str) -> int:
    if shape == "quadratic":
        return QUAD_DIMS * BATCH
    return sum(n_in * n_out + n_out for n_in, n_out in zip(MLP_SIZES[:-1], MLP_SIZES[1:]))


def lstm_forward_flops(rows: int) -> int:
    """Matmul FLOPs of one LSTM forward pass over ``rows`` coordinates (2 * rows * in * out)."""
    flops, in_size = 0, NUM_FEATURES
    for size in LSTM_LAYERS:
        flops += 2 * rows * (in_size + size) * 4 * size
        in_size = size
    return flops + 2 * rows * in_size * 1


def task_forward_flops(shape: str) -> int:
    """Matmul FLOPs of one loss evaluation of one instance."""
    if shape == "quadratic":
        return 2 * BATCH * QUAD_DIMS * QUAD_DIMS
    return sum(2 * BATCH * n_in * n_out for n_in, n_out in zip(MLP_SIZES[:-1], MLP_SIZES[1:]))


def flops_per_inner_step(shape: str) -> dict:
    """Analytic matmul FLOPs per inner step of one member, meta-gradient included.

    LSTM: forward + backward (counted as twice the forward) = 3x forward. Task: the inner
    gradient (forward + backward = 3x forward) and the post-update loss (forward + its share of
    the meta-backward = 3x forward) = 6x forward. Elementwise work (gates, features) and the
    Adam update are not counted.
    """
    lstm = 3 * lstm_forward_flops(coordinates(shape))
    task = 6 * task_forward_flops(shape)
    return {"lstm": lstm, "task": task, "total": lstm + task}


def matmul_peak(n: int, repeats: int, torch=None) -> dict:
    """Measured float32 ``n x n`` matmul rate (median of ``repeats``) in FLOP/s."""
    flops = 2 * n**3
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.PRNGKey(1), (n, n), jnp.float32)
    matmul = jax.jit(jnp.matmul)
    matmul(a, b).block_until_ready()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a, b).block_until_ready()
        times.append(time.perf_counter() - start)
    result = {"n": n, "jax_flops_per_s": flops / statistics.median(times)}
    if torch is not None:
        ta, tb = torch.from_numpy(np.array(a)), torch.from_numpy(np.array(b))
        torch.matmul(ta, tb)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            torch.matmul(ta, tb)
            times.append(time.perf_counter() - start)
        result["torch_flops_per_s"] = flops / statistics.median(times)
    return result


# --------------------------------------------------------------------------------------------
# The benchmark


def benchmark_shape(shape, population, args, torch_reference) -> dict:
    setup = JaxSetup(shape, population, args.unroll, args.horizon, args.seed)
    start = time.perf_counter()
    lowered = setup.step.func.lower(*setup.step.args, setup.theta, setup.meta_opt_state, setup.states, setup.key)
    compiled = lowered.compile()
    compile_seconds = time.perf_counter() - start
    xla_cost = compiled.cost_analysis()
    if isinstance(xla_cost, list):
        xla_cost = xla_cost[0] if xla_cost else {}
    xla_flops = float(xla_cost.get("flops", float("nan"))) if xla_cost else float("nan")

    trainer = (make_torch_trainer(torch_reference, setup, args.unroll, args.horizon, args.seed)
               if torch_reference else None)
    # Warm-up (JAX: compilation via the jit cache, then steady state; torch: allocator, threads).
    setup.run(args.warmup)
    if trainer is not None:
        for _ in range(args.warmup):
            trainer.meta_step()

    inner_steps = population * args.unroll * args.meta_steps
    jax_times, torch_times = [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        setup.run(args.meta_steps)
        jax_times.append(time.perf_counter() - start)
        if trainer is not None:
            start = time.perf_counter()
            for _ in range(args.meta_steps):
                metrics = trainer.meta_step()
            torch_times.append(time.perf_counter() - start)

    flops = flops_per_inner_step(shape)
    jax_rate = inner_steps / statistics.median(jax_times)
    result = {
        "shape": shape,
        "population": population,
        "coordinates_per_member": coordinates(shape),
        "lstm_rows": population * coordinates(shape),
        "inner_steps_per_repeat": inner_steps,
        "jax": {
            "inner_steps_per_s": jax_rate,
            "inner_steps_per_s_repeats": [inner_steps / t for t in jax_times],
            "seconds_repeats": jax_times,
            "compile_seconds": compile_seconds,
            "final_meta_loss": float(setup.metrics["meta_loss"]),
        },
        "flops_per_inner_step": flops,
        "jax_flops_per_s": {name: value * jax_rate for name, value in flops.items()},
        "xla_cost_analysis_flops_per_meta_step": xla_flops,
        "analytic_flops_per_meta_step": flops["total"] * population * args.unroll,
    }
    if trainer is not None:
        torch_rate = inner_steps / statistics.median(torch_times)
        result["torch"] = {
            "inner_steps_per_s": torch_rate,
            "inner_steps_per_s_repeats": [inner_steps / t for t in torch_times],
            "seconds_repeats": torch_times,
            "final_meta_loss": float(metrics["meta_loss"]),
        }
        result["torch_flops_per_s"] = {name: value * torch_rate for name, value in flops.items()}
        result["jax_over_torch"] = jax_rate / torch_rate
    if shape in MLP_DATASETS:
        seconds = sampling_seconds(shape, population, args.unroll, args.meta_steps, args.repeats)
        result["sampling_seconds_per_repeat"] = seconds
        result["sampling_share_of_jax_step"] = seconds / statistics.median(jax_times)
    return result


def label(shape: str, population: int) -> str:
    name = {"quadratic": "quadratic 10x128", "mlp": "MLP 784-20-10 (random data)",
            "mnist": "MLP 784-20-10 (MNIST)"}[shape]
    return f"{name}, P={population}"


def print_report(report: dict) -> None:
    env = report["environment"]
    print()
    print("l2o meta-training throughput: inner steps/s = population x unroll steps per second")
    print("(whole meta-iterations: unroll, meta-gradient, clip + Adam; compilation not timed)")
    print(
        f"JAX {env['jax']} on {env['jax_backend']} (XLA's default thread pool, {env['cpu_count']} cores); "
        + (
            f"torch {env['torch']} eager, torch.set_num_threads({env['torch_threads']})"
            + (" = os.cpu_count()" if env["torch_threads"] == env["cpu_count"] else "")
            if env.get("torch")
            else "torch not installed"
        )
    )
    load = report["load_average_1min"]
    print(
        f"1-min load average {load['before']:.2f} before the run ({load['after']:.2f} after, own load included)"
        + (
            f"\nWARNING: other processes were busy on these {env['cpu_count']} cores: the figures are contended"
            " (torch's OpenMP threads, which wait for each other at every op, suffer most)"
            if load["before"] > 0.5
            else ""
        )
    )
    print(
        f"unroll {report['unroll']}, horizon {report['horizon']}, {report['meta_steps']} meta-steps per "
        f"repeat, median of {report['repeats']} interleaved repeats"
    )
    print()
    peak = report["matmul_peak"]
    header = (
        f"{'shape':<36} {'rows':>7} {'JAX steps/s':>12} {'torch steps/s':>14} {'JAX/torch':>10} "
        f"{'JAX GFLOP/s':>12} {'% peak':>7}"
    )
    print(header)
    print("-" * len(header))
    for r in report["results"]:
        torch_rate = r.get("torch", {}).get("inner_steps_per_s")
        gflops = r["jax_flops_per_s"]["total"] / 1e9
        print(
            f"{label(r['shape'], r['population']):<36} {r['lstm_rows']:>7} "
            f"{r['jax']['inner_steps_per_s']:>12.1f} "
            f"{(format(torch_rate, '.1f') if torch_rate else 'n/a'):>14} "
            f"{(format(r['jax_over_torch'], '.2f') + 'x' if torch_rate else 'n/a'):>10} "
            f"{gflops:>12.2f} {100 * r['jax_flops_per_s']['total'] / peak['jax_flops_per_s']:>6.1f}%"
        )
    print()
    for r in report["results"]:
        spread = lambda xs: f"{min(xs):.1f}-{max(xs):.1f}"
        line = f"  {label(r['shape'], r['population'])}: JAX repeats {spread(r['jax']['inner_steps_per_s_repeats'])}"
        if "torch" in r:
            line += f", torch repeats {spread(r['torch']['inner_steps_per_s_repeats'])}"
        line += f" steps/s; JAX compile {r['jax']['compile_seconds']:.1f} s"
        if "torch" in r:
            line += f"; last meta-loss JAX {r['jax']['final_meta_loss']:.4g}, torch {r['torch']['final_meta_loss']:.4g}"
        if "sampling_share_of_jax_step" in r:
            line += (f"; minibatch sampling alone (randint + gather, same volume) "
                     f"{100 * r['sampling_share_of_jax_step']:.1f}% of the JAX step time")
        print(line)
    print()
    print(
        f"float32 matmul peak ({peak['n']}x{peak['n']}, median of {report['repeats']}): "
        f"JAX {peak['jax_flops_per_s'] / 1e9:.1f} GFLOP/s"
        + (f", torch {peak['torch_flops_per_s'] / 1e9:.1f} GFLOP/s" if "torch_flops_per_s" in peak else "")
    )
    print(
        "JAX GFLOP/s: analytic matmul count (forward 2*rows*in*out per matmul, backward twice that;\n"
        "  LSTM gates + read-out, plus the task's own matmuls), times the measured JAX rate; elementwise\n"
        "  work is not counted. XLA's cost_analysis() is not used: it counts the scan body once\n"
        "  instead of once per step (see 'xla_cost_analysis_flops_per_meta_step' in the JSON)."
    )
    for r in report["results"]:
        f = r["flops_per_inner_step"]
        print(
            f"  {label(r['shape'], r['population'])}: {f['total'] / 1e6:.1f} MFLOP per inner step "
            f"(LSTM {f['lstm'] / 1e6:.1f}, task {f['task'] / 1e6:.2f})"
        )


def environment(torch) -> dict:
    env = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "jax": jax.__version__,
        "jax_backend": jax.default_backend(),
        "jax_devices": [str(d) for d in jax.devices()],
    }
    if torch is not None:
        env.update(torch=torch.__version__, torch_threads=torch.get_num_threads())
    return env


# --------------------------------------------------------------------------------------------
# Equivalence check


def jax_minibatch_indices(states, unroll: int, shape: str) -> np.ndarray:
    """The minibatch indices l2o's truncated_unroll draws, ``(T, 2, P, B)``.

    Mirrors l2o.meta.unroll: ``key = fold_in(state.key, 0)``, then per step
    ``key_grad, key_loss, key_next = split(key, 3)``; the MLP loss draws
    ``randint(key, (batch,), 0, num_examples)``.
    """
    num_examples = mlp_data(shape)[0].shape[0]

    def member(key):
        def body(key, _):
            key_grad, key_loss, key_next = jax.random.split(key, 3)
            draw = lambda k: jax.random.randint(k, (BATCH,), 0, num_examples)
            return key_next, jnp.stack([draw(key_grad), draw(key_loss)])

        return jax.lax.scan(body, jax.random.fold_in(key, 0), None, length=unroll)[1]

    return np.array(jax.vmap(member)(states.key)).transpose(1, 2, 0, 3).copy()


def max_rel(a, b) -> float:
    """max |a - b| / max |b| (0 when both are 0)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = np.max(np.abs(b))
    return float(np.max(np.abs(a - b)) / scale) if scale > 0 else float(np.max(np.abs(a - b)))


def check_shape(shape, population, args, torch, torch_reference) -> dict:
    horizon = 10**6  # no restarts inside the checked truncations
    setup = JaxSetup(shape, population, args.unroll, horizon, args.seed)
    loss_and_grad = jax.jit(jax.value_and_grad(setup.population_loss, has_aux=True))
    # One JAX truncation first, so the checked one starts from non-zero LSTM states.
    (_, (states, _)), _ = loss_and_grad(setup.theta, setup.states)
    (loss, (after, losses)), grads = loss_and_grad(setup.theta, states)
    grads = jax.device_get(grads)

    trainer = make_torch_trainer(torch_reference, setup, args.unroll, horizon, args.seed)
    load_jax_states(trainer, states)
    indices = torch.from_numpy(jax_minibatch_indices(states, args.unroll, shape)) if shape != "quadratic" else None
    t_loss, t_losses = trainer.truncation_loss(indices)
    trainer.meta_optimizer.zero_grad(set_to_none=True)
    t_loss.backward()
    t_grads = trainer.net.grads_as_flax()

    flat_j, flat_t = ravel_pytree(grads)[0], ravel_pytree(t_grads)[0]
    checks = {
        "meta_loss": (float(t_loss.detach()), float(loss), max_rel(float(t_loss.detach()), float(loss))),
        "losses (P, T)": max_rel(t_losses.numpy(), losses),
        "params after truncation": max_rel(trainer.flat.numpy(), flat_params(after)),
        "lstm state after truncation": max(
            max_rel(t.numpy(), j)
            for (th, tc), (jh, jc) in zip(trainer.hidden, after.opt_state.hidden)
            for t, j in ((th, jh), (tc, jc))
        ),
        "meta_gradient (all weights)": max_rel(flat_t, flat_j),
    }
    # Per leaf, for information: a leaf whose exact gradient is ~0 has only round-off to compare.
    leaves = {
        "/".join(str(getattr(k, "key", k)) for k in path[1:]): (max_rel(t, j), float(np.max(np.abs(j))))
        for (path, j), t in zip(jax.tree_util.tree_flatten_with_path(grads)[0], jax.tree.leaves(t_grads))
    }
    # The meta-optimizer on the same meta-gradient: torch's clip + Adam against optax's.
    meta_optimizer = make_meta_optimizer()
    updates, _ = meta_optimizer.update(grads, meta_optimizer.init(setup.theta), setup.theta)
    trainer.net.set_grads_from_flax(grads)
    norm = trainer.apply_meta_gradient()
    # Compared as new weights (both float32 theta + update), relative to the largest update.
    new_j = ravel_pytree(optax.apply_updates(setup.theta, updates))[0]
    new_t = ravel_pytree(trainer.net.params_as_flax())[0]
    scale = float(np.max(np.abs(ravel_pytree(updates)[0])))
    error = float(np.max(np.abs(np.float64(new_t) - np.float64(new_j)))) / scale
    # Both round theta + update to float32 (torch fuses it into addcdiv_): differences of a few
    # units in the last place of theta are expected, i.e. a floor of ulp(max|theta|) / max|update|.
    floor = float(np.spacing(np.max(np.abs(new_j)))) / scale
    checks["clip + Adam: new weights"] = (error, floor)
    checks["global grad norm"] = max_rel(float(norm), float(optax.global_norm(grads)))
    return {
        "shape": shape,
        "population": population,
        "checks": checks,
        "per_leaf_gradient": leaves,
        "grad_norm": float(optax.global_norm(grads)),
    }


def run_check(args, torch, torch_reference) -> bool:
    tolerance = args.check_tolerance
    print(
        f"Equivalence check: identical LSTM weights, inner states, instances and minibatches in both;\n"
        f"one truncation of {args.unroll} steps from a state advanced by one earlier truncation;\n"
        f"then torch's clip + Adam against optax's on the same meta-gradient.\n"
        f"Figures are max|torch - jax| / max|jax| (float64 comparison of float32 results); "
        f"tolerance {tolerance:g}.\n"
    )
    ok = True
    results = []
    for shape, population in shapes(args):
        result = check_shape(shape, population, args, torch, torch_reference)
        results.append(result)
        print(f"{label(shape, population)}:")
        for name, value in result["checks"].items():
            limit = tolerance
            if isinstance(value, tuple) and len(value) == 3:
                t, j, err = value
                text = f"torch {t:.7g}  jax {j:.7g}  rel.err {err:.2e}"
            elif isinstance(value, tuple):
                err, floor = value
                limit = max(tolerance, 4 * floor)
                text = f"err/max|update| {err:.2e} (float32 floor ulp(theta)/max|update| = {floor:.1e})"
            else:
                err, text = value, f"rel.err {value:.2e}"
            passed = err <= limit
            ok &= passed
            print(f"  {name:<32} {text}  {'ok' if passed else 'FAIL'}")
        print(f"  meta-gradient norm before clipping: {result['grad_norm']:.4g}; per weight, for information\n"
              f"    (rel.err, max|g|; a weight whose exact gradient is ~0 compares only round-off):")
        for name, (err, size) in result["per_leaf_gradient"].items():
            print(f"    {name:<18} {err:.2e}  {size:.3g}")
    print("\nCHECK PASSED" if ok else "\nCHECK FAILED")
    if args.json:
        Path(args.json).write_text(json.dumps({"check": results, "passed": ok}, indent=2, default=str) + "\n")
    return ok


# --------------------------------------------------------------------------------------------


def shapes(args):
    out = []
    for shape in args.shapes.split(","):
        shape = shape.strip()
        if shape not in ("quadratic", *MLP_DATASETS):
            raise SystemExit(f"unknown shape {shape!r}; choose from quadratic, mlp, mnist")
        out.append((shape, args.quadratic_population if shape == "quadratic" else args.mlp_population))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per implementation (median reported)")
    parser.add_argument("--meta-steps", type=int, default=3, help="meta-iterations per timed repeat")
    parser.add_argument("--warmup", type=int, default=2, help="untimed meta-iterations first (after compilation)")
    parser.add_argument("--quadratic-population", type=int, default=8, help="population P of the quadratic shape")
    parser.add_argument("--mlp-population", type=int, default=1, help="population P of the MLP shape")
    parser.add_argument("--unroll", type=int, default=20, help="inner steps per truncation")
    parser.add_argument("--horizon", type=int, default=100, help="inner steps of a run before it restarts")
    parser.add_argument("--shapes", default="quadratic,mlp,mnist",
                        help="comma-separated: quadratic, mlp (random data), mnist (needs the MNIST files)")
    parser.add_argument("--matmul-size", type=int, default=2048, help="n of the n x n peak matmul")
    parser.add_argument("--no-torch", action="store_true", help="time only the JAX implementation")
    parser.add_argument(
        "--torch-threads", type=int, default=None, help="torch.set_num_threads (default: os.cpu_count())"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON to PATH")
    parser.add_argument("--check", action="store_true", help="verify torch == JAX on one truncation, then exit")
    parser.add_argument("--check-tolerance", type=float, default=1e-4, help="relative tolerance of --check")
    args = parser.parse_args(argv)

    torch, torch_reference = (None, None) if args.no_torch else import_torch()
    if torch is not None:
        torch.set_num_threads(args.torch_threads or os.cpu_count())
        # XLA:CPU flushes denormal floats to zero; without the same, torch's arithmetic on the
        # tiny gradients of the random-data MLP runs at denormal speed (1.7x slower here).
        torch.set_flush_denormal(True)

    if args.check:
        if torch is None:
            print("--check needs torch.")
            return 2
        return 0 if run_check(args, torch, torch_reference) else 1

    load_before = os.getloadavg()[0]
    results = []
    for shape, population in shapes(args):
        print(f"timing {label(shape, population)} ...", flush=True)
        results.append(benchmark_shape(shape, population, args, torch_reference))
    peak = matmul_peak(args.matmul_size, args.repeats, torch)
    report = {
        "metric": "inner steps per second (population x unroll steps / s), whole meta-iterations",
        "unroll": args.unroll,
        "horizon": args.horizon,
        "meta_steps": args.meta_steps,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "flops_method": "analytic matmul count: forward 2*rows*in*out per matmul, backward 2x forward",
        "environment": environment(torch),
        "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]},
        "matmul_peak": peak,
        "results": results,
    }
    for r in results:
        r["jax_fraction_of_peak"] = r["jax_flops_per_s"]["total"] / peak["jax_flops_per_s"]
    print_report(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
