"""Long horizons: runs of log-uniform length, staggered first runs, and the PES bookkeeping of
where a run began."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from l2o.config import TrainConfig
from l2o.meta import MetaTrainer, fresh_state, truncated_unroll
from l2o.meta.truncated import initial_inner_states
from l2o.meta.unroll import run_start
from l2o.optimizers import DM
from l2o.tasks import quadratic


def test_run_lengths_are_log_uniform_between_the_bounds():
    keys = jax.random.split(jax.random.PRNGKey(0), 20000)
    lengths = 1000 - np.asarray(jax.vmap(lambda k: run_start(k, 1000, 10))(keys))
    assert lengths.min() >= 10 and lengths.max() <= 1000
    # log-uniform on [10, 1001): the mean of log length is the midpoint, each decade as likely.
    assert abs(np.mean(np.log(lengths)) - (np.log(10) + np.log(1001)) / 2) < 0.03
    assert abs(np.mean(lengths < 100) - 0.5) < 0.02
    assert int(run_start(keys[0], 1000, None)) == 0 and int(run_start(keys[0], 50, 50)) == 0


def test_a_run_of_random_length_restarts_when_it_has_run_its_length():
    """A run started at position s restarts after horizon - s steps, and new_run marks the
    steps of the new run only."""
    task, tx = quadratic(num_dims=3, batch_size=2), optax.sgd(0.01)
    state = fresh_state(task, tx, jax.random.PRNGKey(0), start=7)
    _, trace = truncated_unroll(task, tx, state, 6, horizon=10, min_length=2)
    np.testing.assert_array_equal(trace.new_run, [False, False, False, True, True, True])
    np.testing.assert_array_equal(trace.run_step[:3], [8, 9, 10])
    restarted_at = int(trace.run_step[3]) - 1  # the new run's start position
    assert 0 <= restarted_at <= 8  # a length in [2, 10]


def test_staggered_first_runs_spread_over_the_horizon():
    task, lopt = quadratic(num_dims=3, batch_size=2), DM(layers=(4,))
    theta = lopt.init(jax.random.PRNGKey(0))
    plain = initial_inner_states(task, lopt, theta, jax.random.PRNGKey(1), 64, horizon=100)
    staggered = initial_inner_states(task, lopt, theta, jax.random.PRNGKey(1), 64, horizon=100, stagger=True)
    assert np.all(np.asarray(plain.step) == 0)
    steps = np.asarray(staggered.step)
    assert steps.min() >= 0 and steps.max() < 100 and steps.std() > 20
    jax.tree.map(np.testing.assert_array_equal, plain.params, staggered.params)  # fresh parameters either way


def test_pes_meta_training_with_long_staggered_horizons():
    config = TrainConfig(problem="quadratic", problem_options={"num_dims": 3, "batch_size": 2}, estimator="pes",
                         num_steps=40, min_horizon=5, stagger=True, unroll_length=5, n_samplings=4, num_epochs=2,
                         evaluation_epochs=4, optimizer_options={"layers": [4]})
    trainer = MetaTrainer(config)
    states = trainer.initial_progress().states
    assert len(set(np.asarray(states.inner.step).tolist())) > 2  # staggered
    result = trainer.train(progress=False)
    assert np.isfinite(result.best_score)
    assert jnp.all(jnp.isfinite(jax.flatten_util.ravel_pytree(result.last_theta)[0]))
