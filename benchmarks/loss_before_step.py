"""What taking each inner step's loss from its gradient evaluation saves (``loss_before_step``).

Times whole meta-iterations (estimate + clip + Adam) of truncated BPTT and of PES, each with the
meta-loss measured after every step (one more forward pass of the task; the default) and before
it (the gradient evaluation's loss, ``meta_loss/loss_before_step=true``). Two setups: the DM LSTM
on the MNIST MLP (784-20-10 sigmoid, batch 128; ``--setup mnist``), and AdafacMLP on the
``fast_velo`` distribution (``--setup fast_velo``, the shipped recipe's). Both estimators run
``2 * pairs`` inner runs. Figures are inner steps per second, medians of ``--repeats``
interleaved repeats of ``--meta-steps`` meta-iterations, compilation excluded.

    python benchmarks/loss_before_step.py [--setup mnist|fast_velo] [--dataset random|mnist] [--pairs 4]
        [--unroll 20] [--json FILE]
"""

from __future__ import annotations

import argparse
import json

import jax
import optax
from harness import LoadCapture, interleaved, medians, meta_steps

import l2o
from l2o.meta import PES, MetaLoss, TruncatedBPTT, make_meta_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--setup", choices=("mnist", "fast_velo"), default="mnist")
    parser.add_argument("--dataset", default="random", help="mnist setup: random (MNIST-shaped) or mnist")
    parser.add_argument("--pairs", type=int, default=4, help="PES antithetic pairs (default 4)")
    parser.add_argument("--unroll", type=int, default=20)
    parser.add_argument("--horizon", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--meta-steps", dest="meta_steps", type=int, default=3)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()

    if args.setup == "mnist":
        task = l2o.tasks.mlp_classifier(layers=[20], activation="sigmoid", batch_size=128, dataset=args.dataset)
        lopt = l2o.optimizers.DM(preprocess="log_sign", output_scale=0.1)
        setup = f"MLP 784-20-10 ({args.dataset}), DM (20, 20)"
    else:
        task, lopt, setup = l2o.get_task("fast_velo"), l2o.optimizers.AdafacMLP(), "fast_velo, AdafacMLP"
    meta_optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-3))
    theta = lopt.init(jax.random.PRNGKey(0))
    common = dict(unroll_length=args.unroll, horizon=args.horizon)
    runs = {}
    for before in (False, True):
        objective = MetaLoss(loss_before_step=before)
        setups = {"truncated": (TruncatedBPTT(task, lopt, objective=objective, **common), 2 * args.pairs),
                  "pes": (PES(task, lopt, sigma=0.01, objective=objective, **common), args.pairs)}
        for name, (estimator, population) in setups.items():
            states = estimator.init_states(theta, jax.random.PRNGKey(1), population)
            carry = [theta, meta_optimizer.init(theta), states]
            runs[(name, before)] = meta_steps(make_meta_step(estimator, meta_optimizer), carry, args.meta_steps)
    with LoadCapture() as load:
        seconds = medians(interleaved({f"{n}/{b}": run for (n, b), run in runs.items()}, args.repeats, args.warmup))
    inner_steps = 2 * args.pairs * args.unroll * args.meta_steps
    rate = {key: inner_steps / value for key, value in seconds.items()}
    print(load.describe())
    print(f"\n{setup}, {2 * args.pairs} inner runs, unroll {args.unroll}; "
          f"median of {args.repeats} x {args.meta_steps} meta-steps")
    print(f"{'estimator':<10} {'loss after step':>16} {'loss before step':>17} {'gain':>6}")
    results = {}
    for name in ("truncated", "pes"):
        after, before = rate[f"{name}/False"], rate[f"{name}/True"]
        results[name] = {"after_inner_steps_per_s": after, "before_inner_steps_per_s": before, "gain": before / after}
        print(f"{name:<10} {after:>16.1f} {before:>17.1f} {before / after:>5.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "load_average_1min": load.as_dict(), "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
