"""Multi-device meta-training: sharding the population axis leaves the meta-gradient unchanged.

The checks run in subprocesses with two CPU devices (``--xla_force_host_platform_device_count``),
as XLA reads that flag once, at start-up.
"""

import json
import os
import subprocess
import sys

import numpy as np

COMMON = r"""
import json
import jax
import numpy as np
report = {"device_count": jax.device_count()}
"""

GRADIENTS = r"""
from l2o.meta import PES, TruncatedBPTT
from l2o.meta.sharding import population_mesh, replicate, shard_population
from l2o.optimizers import DM
from l2o.tasks import quadratic

task, lopt = quadratic(batch_size=8), DM(preprocess="log_sign", output_scale=0.1)
theta = lopt.init(jax.random.PRNGKey(0))
for estimator in (TruncatedBPTT(task, lopt, 5, 20, second_derivatives=True), PES(task, lopt, 5, 20)):
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
"""

TRAINING = r"""
from l2o.config import TrainConfig
from l2o.meta import MetaTrainer

config = TrainConfig(problem="quadratic", problem_options={"batch_size": 8}, num_epochs=2, num_steps=20,
                     unroll_length=5, n_samplings=4, evaluation_epochs=4, evaluation_period=1, log_period=1,
                     estimator="pes")
result = MetaTrainer(config).train(progress=False)
report["trained_theta"] = [np.asarray(leaf).ravel().tolist() for leaf in jax.tree.leaves(result.last_theta)]
print(json.dumps(report))
"""


def _run(script: str, device_count: int):
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={device_count}"
    env = {**os.environ, "XLA_FLAGS": flags.strip()}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_sharded_meta_gradients_and_training_equal_single_device_ones():
    """Two devices: the sharded meta-gradients equal the unsharded ones, and a short PES
    training run ends with the theta of the same run on one device."""
    two, one = _run(COMMON + GRADIENTS + TRAINING, 2), _run(COMMON + TRAINING, 1)
    assert two["device_count"] == 2 and one["device_count"] == 1
    for name in ("TruncatedBPTT", "PES"):
        assert two[name]["devices"] == [2], f"{name}: the population was not spread"
        assert two[name]["relative_error"] < 1e-5, name
    for a, b in zip(one["trained_theta"], two["trained_theta"]):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6)
