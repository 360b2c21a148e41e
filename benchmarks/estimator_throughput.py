"""Meta-training throughput of the gradient estimators, and its scaling from 1 to 2 devices.

For each device count (a subprocess per count: XLA fixes the device list at start-up; on CPU
the devices are made with ``--xla_force_host_platform_device_count``), the script times whole
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

CHILD = r"""
import json, statistics, sys, time
import jax, optax
import l2o
from l2o.meta import PES, TruncatedBPTT, make_meta_step
from l2o.meta.sharding import population_mesh, population_size, replicate, shard_population

args = json.loads(sys.argv[1])
task = l2o.tasks.mlp_classifier(layers=[20], activation="sigmoid", batch_size=128, dataset=args["dataset"])
lopt = l2o.optimizers.DM(preprocess="log_sign", output_scale=0.1)
meta_optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-3))
theta = lopt.init(jax.random.PRNGKey(0))
common = dict(unroll_length=args["unroll"], horizon=args["horizon"])
setups = {
    "truncated": (TruncatedBPTT(task, lopt, **common), 2 * args["pairs"]),
    "pes": (PES(task, lopt, sigma=0.01, **common), args["pairs"]),
}
runs = {}
for name, (estimator, population) in setups.items():
    step = make_meta_step(estimator, meta_optimizer)
    states = estimator.init_states(theta, jax.random.PRNGKey(1), population)
    mesh = population_mesh(population_size(states))
    carry = [theta, meta_optimizer.init(theta), states]
    if mesh is not None:
        carry = [*replicate(carry[:2], mesh), shard_population(states, mesh)]
    runs[name] = {"step": step, "carry": carry, "devices": 1 if mesh is None else mesh.size, "times": []}

def run(entry, count, offset):
    theta, opt_state, states = entry["carry"]
    for i in range(count):
        theta, opt_state, states, metrics = entry["step"](theta, opt_state, states, jax.random.PRNGKey(offset + i))
    jax.block_until_ready((theta, states, metrics))
    entry["carry"] = [theta, opt_state, states]

for entry in runs.values():
    run(entry, args["warmup"], 0)
for repeat in range(args["repeats"]):
    for entry in runs.values():
        start = time.perf_counter()
        run(entry, args["meta_steps"], 1000 * (repeat + 1))
        entry["times"].append(time.perf_counter() - start)
inner_runs = 2 * args["pairs"]
print(json.dumps({name: {
    "devices_used": entry["devices"],
    "median_seconds": statistics.median(entry["times"]),
    "inner_steps_per_s": inner_runs * args["unroll"] * args["meta_steps"] / statistics.median(entry["times"]),
} for name, entry in runs.items()}))
"""


def measure(device_count: int, args: argparse.Namespace) -> dict:
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={device_count}"}
    child_args = json.dumps({key: getattr(args, key) for key in
                             ("dataset", "pairs", "unroll", "horizon", "warmup", "repeats", "meta_steps")})
    done = subprocess.run([sys.executable, "-c", CHILD, child_args], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"the {device_count}-device run failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
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
    print(f"1-minute load average before: {os.getloadavg()[0]:.2f}; {os.cpu_count()} CPUs")
    results = {count: measure(count, args) for count in counts}
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
            json.dump({"args": vars(args), "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
