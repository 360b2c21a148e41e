"""Meta-training throughput of the gradient estimators, and its scaling from 1 to 2 devices.

For each device count (a subprocess per count, this script with ``--child``: XLA fixes the
device list at start-up; on CPU the devices are made with
``--xla_force_host_platform_device_count``), the script times whole
meta-iterations (estimate + clip + Adam) of truncated BPTT and of PES with the DM LSTM on the
MNIST-shaped MLP, the population sharded over the devices (``l2o.meta.sharding``). Both
estimators run the same number of inner runs (PES: ``--pairs`` antithetic pairs, i.e.
``2 * pairs`` runs; truncated BPTT: ``2 * pairs`` members). Figures are inner steps per second
(inner runs x unroll / wall second), median of ``--repeats`` interleaved repeats of
``--meta-steps`` meta-iterations, compilation excluded.

    python benchmarks/estimator_throughput.py [--devices 1,2] [--pairs 4] [--dataset random|mnist]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import jax
import optax
from harness import LoadCapture, interleaved, medians, meta_steps

import l2o
from l2o.meta import PES, TruncatedBPTT, make_meta_step
from l2o.meta.sharding import population_mesh, population_size, replicate, shard_population


def child(args: dict) -> dict:
    """In a process started with ``XLA_FLAGS``: the figures of each estimator on its devices."""
    task = l2o.tasks.mlp_classifier(layers=[20], activation="sigmoid", batch_size=128, dataset=args["dataset"])
    lopt = l2o.optimizers.DM(preprocess="log_sign", output_scale=0.1)
    meta_optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-3))
    theta = lopt.init(jax.random.PRNGKey(0))
    common = dict(unroll_length=args["unroll"], horizon=args["horizon"])
    setups = {
        "truncated": (TruncatedBPTT(task, lopt, **common), 2 * args["pairs"]),
        "pes": (PES(task, lopt, sigma=0.01, **common), args["pairs"]),
    }
    runs, devices = {}, {}
    for name, (estimator, population) in setups.items():
        step = make_meta_step(estimator, meta_optimizer)
        states = estimator.init_states(theta, jax.random.PRNGKey(1), population)
        mesh = population_mesh(population_size(states))
        carry = [theta, meta_optimizer.init(theta), states]
        if mesh is not None:
            carry = [*replicate(carry[:2], mesh), shard_population(states, mesh)]
        runs[name] = meta_steps(step, carry, args["meta_steps"])
        devices[name] = 1 if mesh is None else mesh.size
    seconds = medians(interleaved(runs, args["repeats"], args["warmup"]))
    inner_steps = 2 * args["pairs"] * args["unroll"] * args["meta_steps"]
    return {name: {"devices_used": devices[name], "median_seconds": seconds[name],
                   "inner_steps_per_s": inner_steps / seconds[name]} for name in runs}


def measure(device_count: int, args: argparse.Namespace) -> dict:
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={device_count}"}
    child_args = json.dumps({key: getattr(args, key) for key in
                             ("dataset", "pairs", "unroll", "horizon", "warmup", "repeats", "meta_steps")})
    done = subprocess.run([sys.executable, __file__, "--child", child_args], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"the {device_count}-device run failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        print(json.dumps(child(json.loads(sys.argv[2]))))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", default="1,2", help="device counts to compare (default 1,2)")
    parser.add_argument("--dataset", default="random", help="random (MNIST-shaped) or mnist")
    parser.add_argument("--pairs", type=int, default=4, help="PES antithetic pairs (default 4)")
    parser.add_argument("--unroll", type=int, default=20)
    parser.add_argument("--horizon", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--meta-steps", dest="meta_steps", type=int, default=3)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    counts = [int(part) for part in args.devices.split(",")]
    with LoadCapture() as load:
        results = {count: measure(count, args) for count in counts}
    print(load.describe())
    base = results[counts[0]]
    print(f"\nMLP 784-20-10 ({args.dataset}), DM (20, 20), {2 * args.pairs} inner runs, unroll {args.unroll}; "
          f"median of {args.repeats} x {args.meta_steps} meta-steps")
    print(f"{'estimator':<10} {'devices':>7} {'inner steps/s':>14} {'vs ' + str(counts[0]) + ' device(s)':>16}")
    for count in counts:
        for name, figures in results[count].items():
            speedup = figures["inner_steps_per_s"] / base[name]["inner_steps_per_s"]
            print(f"{name:<10} {figures['devices_used']:>7} {figures['inner_steps_per_s']:>14.1f} {speedup:>15.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "load_average_1min": load.as_dict(), "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
