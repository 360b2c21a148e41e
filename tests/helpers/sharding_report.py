"""Run by tests/test_sharding.py in a subprocess whose XLA_FLAGS force a number of CPU devices.

Prints one JSON line: the device count, the final theta of a short PES training run and, with
``--gradients``, how far the sharded meta-gradients of truncated BPTT and PES are from the
unsharded ones and over how many devices their population states are spread.
"""

import json
import sys

import jax
import numpy as np

from l2o.config import TrainConfig
from l2o.meta import PES, MetaTrainer, TruncatedBPTT
from l2o.meta.sharding import population_mesh, replicate, shard_population
from l2o.optimizers import DM
from l2o.tasks import quadratic


def gradient_report() -> dict:
    task, lopt = quadratic(batch_size=8), DM(layers=(4,), preprocess="log_sign", output_scale=0.1)
    theta = lopt.init(jax.random.PRNGKey(0))
    report = {}
    for estimator in (TruncatedBPTT(task, lopt, 5, 20, second_derivatives=False), PES(task, lopt, 5, 20)):
        states = estimator.init_states(theta, jax.random.PRNGKey(1), 4)
        grad = jax.jit(estimator.grad)
        single, _, _ = grad(theta, states, jax.random.PRNGKey(2))
        mesh = population_mesh(jax.tree.leaves(states)[0].shape[0])
        spread, new_states, _ = grad(replicate(theta, mesh), shard_population(states, mesh), jax.random.PRNGKey(2))
        report[type(estimator).__name__] = {
            "relative_error": max(float(np.max(np.abs(a - b)) / np.max(np.abs(a)))
                                  for a, b in zip(jax.tree.leaves(single), jax.tree.leaves(spread))),
            "devices": sorted({len(leaf.sharding.device_set) for leaf in jax.tree.leaves(new_states)}),
        }
    return report


# A short PES run on small quadratics with a small DM (also what tests/test_multi_process.py trains,
# for more epochs: the same compiled programs, shared through the persistent compilation cache).
CONFIG = TrainConfig(problem="quadratic", problem_options={"batch_size": 8}, num_epochs=2, num_steps=20,
                     unroll_length=5, n_samplings=4, evaluation_epochs=4, evaluation_period=1, log_period=1,
                     estimator="pes", optimizer_options={"layers": [4]})


def trained_theta() -> list:
    result = MetaTrainer(CONFIG).train(progress=False)
    return [np.asarray(leaf).ravel().tolist() for leaf in jax.tree.leaves(result.last_theta)]


if __name__ == "__main__":
    report = {"device_count": jax.device_count()}
    if "--gradients" in sys.argv:
        report.update(gradient_report())
    report["trained_theta"] = trained_theta()
    print(json.dumps(report))
