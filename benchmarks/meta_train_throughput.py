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
``benchmarks/torch_reference.py`` (both set up in ``dm_setups.py``).
``torch_equivalence.py`` verifies that both compute the same meta-loss, meta-gradient and
meta-update on identical weights, states and minibatches. The torch side runs on the GPU when
torch sees one (``--torch-device`` to choose), as the JAX side does; its CUDA work is waited for
(``torch.cuda.synchronize``) before a repeat's clock stops.

Usage::

    python benchmarks/meta_train_throughput.py [--repeats 5] [--meta-steps 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from dm_setups import (
    BATCH,
    LSTM_LAYERS,
    MLP_DATASETS,
    MLP_SIZES,
    NUM_FEATURES,
    QUAD_DIMS,
    JaxSetup,
    import_torch,
    label,
    make_torch_trainer,
    mlp_data,
    parse_shapes,
)
from harness import LoadCapture, environment, interleaved, median_seconds, torch_synchronize


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

    return median_seconds(lambda: draw_all(jax.random.PRNGKey(0)), repeats)


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


def matmul_peak(n: int, repeats: int, torch=None, torch_device: str = "cpu") -> dict:
    """Measured float32 ``n x n`` matmul rate (median of ``repeats``) in FLOP/s."""
    flops = 2 * n**3
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.PRNGKey(1), (n, n), jnp.float32)
    matmul = jax.jit(jnp.matmul)
    result = {"n": n, "jax_flops_per_s": flops / median_seconds(lambda: matmul(a, b), repeats)}
    if torch is not None:
        ta, tb = (torch.from_numpy(np.array(x)).to(torch_device) for x in (a, b))
        matmul = lambda: (torch.matmul(ta, tb), torch_synchronize(torch_device))
        result["torch_flops_per_s"] = flops / median_seconds(matmul, repeats)
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

    trainer = (make_torch_trainer(torch_reference, setup, args.unroll, args.horizon, args.seed, args.torch_device)
               if torch_reference else None)
    # Warm-up (JAX: compilation via the jit cache, then steady state; torch: allocator, threads).
    setup.run(args.warmup)
    if trainer is not None:
        for _ in range(args.warmup):
            trainer.meta_step()

    inner_steps = population * args.unroll * args.meta_steps
    torch_metrics = {}

    def torch_meta_steps():
        for _ in range(args.meta_steps):
            torch_metrics.update(trainer.meta_step())
        torch_synchronize(args.torch_device)

    candidates = {"jax": lambda: setup.run(args.meta_steps)}
    if trainer is not None:
        candidates["torch"] = torch_meta_steps
    times = interleaved(candidates, args.repeats, warmup=0)
    jax_times, torch_times = times["jax"], times.get("torch", [])

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
            "final_meta_loss": float(torch_metrics["meta_loss"]),
        }
        result["torch_flops_per_s"] = {name: value * torch_rate for name, value in flops.items()}
        result["jax_over_torch"] = jax_rate / torch_rate
    if shape in MLP_DATASETS:
        seconds = sampling_seconds(shape, population, args.unroll, args.meta_steps, args.repeats)
        result["sampling_seconds_per_repeat"] = seconds
        result["sampling_share_of_jax_step"] = seconds / statistics.median(jax_times)
    return result


def print_report(report: dict) -> None:
    env = report["environment"]
    print()
    print("l2o meta-training throughput: inner steps/s = population x unroll steps per second")
    print("(whole meta-iterations: unroll, meta-gradient, clip + Adam; compilation not timed)")
    print(
        f"JAX {env['jax']} on {env['jax_backend']} (XLA's default thread pool, {env['cpu_count']} cores); "
        + (
            f"torch {env['torch']} eager on {env['torch_device']}, torch.set_num_threads({env['torch_threads']})"
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
    parser.add_argument("--torch-device", default=None,
                        help="torch device of the reference (default: cuda when torch sees a GPU, else cpu)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON to PATH")
    args = parser.parse_args(argv)

    torch, torch_reference = (None, None) if args.no_torch else import_torch()
    if args.torch_device is None:
        args.torch_device = "cuda" if torch is not None and torch.cuda.is_available() else "cpu"
    if torch is not None:
        torch.set_num_threads(args.torch_threads or os.cpu_count())
        # XLA:CPU flushes denormal floats to zero; without the same, torch's arithmetic on the
        # tiny gradients of the random-data MLP runs at denormal speed (1.7x slower here).
        torch.set_flush_denormal(True)

    results = []
    with LoadCapture() as load:
        for shape, population in parse_shapes(args.shapes, args.quadratic_population, args.mlp_population):
            print(f"timing {label(shape, population)} ...", flush=True)
            results.append(benchmark_shape(shape, population, args, torch_reference))
        peak = matmul_peak(args.matmul_size, args.repeats, torch, args.torch_device)
    report = {
        "metric": "inner steps per second (population x unroll steps / s), whole meta-iterations",
        "unroll": args.unroll,
        "horizon": args.horizon,
        "meta_steps": args.meta_steps,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "flops_method": "analytic matmul count: forward 2*rows*in*out per matmul, backward 2x forward",
        "environment": {**environment(torch), **({"torch_device": args.torch_device} if torch else {})},
        "load_average_1min": load.as_dict(),
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
