"""Meta-gradient estimators against the exact full-horizon meta-gradient.

On a small quadratic the exact gradient of a whole run's summed loss is computable by BPTT
through all of its steps. PES, summed over the truncations of a run, must agree with it in
expectation; truncated BPTT, and antithetic truncated ES (which estimates the same truncated
gradient), must not.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from l2o.config import TrainConfig
from l2o.errors import L2OError
from l2o.meta import (
    ES,
    ESTIMATORS,
    PES,
    MetaLoss,
    TruncatedBPTT,
    initial_inner_states,
    make_estimator,
    make_meta_step,
    truncated_bptt_loss,
)
from l2o.meta.es import _antithetic_noise
from l2o.optimizers import DM
from l2o.tasks import quadratic

HORIZON, UNROLL = 20, 5
REPLICAS, PAIRS = 6, 256


@pytest.fixture(scope="module")
def setup():
    task = quadratic(num_dims=5, batch_size=8)
    lopt = DM(layers=(), preprocess="none", output_scale=0.1)  # two meta-parameters: a learning rate and a bias
    theta = lopt.init(jax.random.PRNGKey(0))
    return task, lopt, theta


def _flat(tree):
    return np.concatenate([np.ravel(leaf) for leaf in jax.tree.leaves(tree)])


def _run_gradients(estimator, theta, keys):
    """Per key: the sum of the estimator's meta-gradients over the truncations of one whole run."""
    grad = jax.jit(estimator.grad)
    totals = []
    for key in keys:
        states = estimator.init_states(theta, key, PAIRS)
        total = np.zeros_like(_flat(theta))
        for index in range(HORIZON // UNROLL):
            estimate, states, _ = grad(theta, states, jax.random.fold_in(key, 1000 + index))
            total += _flat(estimate)
        totals.append(total)
    return np.stack(totals)


KEYS = [jax.random.PRNGKey(10 + r) for r in range(REPLICAS)]


@pytest.fixture(scope="module")
def exact(setup):
    """The exact meta-gradient of a whole run, averaged over the replicas' instances."""
    task, lopt, theta = setup
    loss = truncated_bptt_loss(task, lopt, unroll_length=HORIZON, horizon=HORIZON, second_derivatives=True)
    gradient = jax.jit(jax.grad(lambda t, s: loss(t, s)[0]))
    return np.mean([_flat(gradient(theta, initial_inner_states(task, lopt, theta, key, PAIRS))) for key in KEYS],
                   axis=0)


def _replicated(estimator, theta):
    """Mean and standard error over replicas (the instances of :data:`KEYS`)."""
    estimates = _run_gradients(estimator, theta, KEYS)
    return estimates.mean(0), estimates.std(0, ddof=1) / np.sqrt(REPLICAS)


def test_pes_is_unbiased_for_the_full_horizon_and_truncated_estimators_are_not(setup, exact):
    task, lopt, theta = setup
    pes_mean, pes_error = _replicated(PES(task, lopt, UNROLL, HORIZON, sigma=0.01), theta)
    # Within 4 standard errors plus 1% for the Gaussian smoothing of the objective.
    np.testing.assert_array_less(np.abs(pes_mean - exact), 4 * pes_error + 0.01 * np.abs(exact))
    assert np.linalg.norm(pes_mean - exact) < 0.05 * np.linalg.norm(exact)

    truncated = TruncatedBPTT(task, lopt, UNROLL, HORIZON, second_derivatives=True)
    tbptt = _run_gradients(truncated, theta, KEYS).mean(0)
    # Truncation drops the influence of theta on the state at each truncation's start.
    assert np.linalg.norm(tbptt - exact) > 0.1 * np.linalg.norm(exact)
    assert np.linalg.norm(tbptt - exact) > 5 * np.linalg.norm(pes_error)

    # Antithetic truncated ES estimates that same truncated gradient, bias included.
    es_mean, es_error = _replicated(ES(task, lopt, unroll_length=UNROLL, horizon=HORIZON, sigma=0.01), theta)
    np.testing.assert_array_less(np.abs(es_mean - tbptt), 4 * es_error + 0.01 * np.abs(tbptt))
    relative = lambda g: np.linalg.norm(g - exact) / np.linalg.norm(exact)
    print(f"\n(bias, kernel) exact {exact}; PES {pes_mean} +- {pes_error} ({relative(pes_mean):.1%}); "
          f"truncated BPTT {tbptt} ({relative(tbptt):.1%}); ES {es_mean} +- {es_error} ({relative(es_mean):.1%})")


@pytest.mark.parametrize("horizon", [10, 8])
def test_pes_accumulator_restarts_with_the_inner_run(setup, horizon):
    """The accumulator sums the perturbations since its run began, resets included mid-unroll."""
    task, lopt, theta = setup
    estimator = PES(task, lopt, unroll_length=5, horizon=horizon, sigma=0.1)
    states = estimator.init_states(theta, jax.random.PRNGKey(0), 3)
    keys = [jax.random.PRNGKey(k) for k in (1, 2, 3)]
    noise = [_antithetic_noise(theta, k, 3, 0.1) for k in keys]
    accumulators = []
    for key in keys:
        _, states, _ = estimator.grad(theta, states, key)
        accumulators.append(states.accumulator)
    add = lambda a, b: jax.tree.map(jnp.add, a, b)
    close = lambda a, b: np.testing.assert_allclose(_flat(a), _flat(b), rtol=1e-6, atol=1e-7)
    close(accumulators[0], noise[0])
    if horizon == 10:  # steps 1-5, 6-10 of one run; then a new run
        close(accumulators[1], add(noise[0], noise[1]))
        close(accumulators[2], noise[2])
    else:  # the run ends at step 8, inside the second truncation; the next lasts through the third
        close(accumulators[1], noise[1])
        close(accumulators[2], add(noise[1], noise[2]))


def test_antithetic_particles_share_their_problem(setup):
    task, lopt, theta = setup
    states = PES(task, lopt, UNROLL, HORIZON).init_states(theta, jax.random.PRNGKey(0), 4)
    for leaf in jax.tree.leaves(states.inner):
        np.testing.assert_array_equal(leaf[:4], leaf[4:])
    noise = _flat(jax.tree.map(lambda n: n[:4] + n[4:], _antithetic_noise(theta, jax.random.PRNGKey(1), 4, 0.1)))
    np.testing.assert_array_equal(noise, 0.0)


@pytest.mark.parametrize("name", ESTIMATORS)
def test_every_registered_estimator_meets_the_contract(name, setup):
    """Built from a configuration through the registry: a dataclass with a ``task`` field whose
    meta-step keeps the structures of theta and the states and reports the promised metrics."""
    task, lopt, theta = setup
    config = TrainConfig(estimator=name, num_steps=10, unroll_length=5)
    estimator = make_estimator(config.estimator, task, lopt, unroll_length=5, horizon=10, objective=MetaLoss())
    assert dataclasses.is_dataclass(estimator) and estimator.task is task
    states = estimator.init_states(theta, jax.random.PRNGKey(1), 4)
    assert len({leaf.shape[0] for leaf in jax.tree.leaves(states)}) == 1  # one population axis (pairs x 2 for ES)
    step = make_meta_step(estimator, optax.adam(1e-3))
    new_theta, _, new_states, metrics = step(theta, optax.adam(1e-3).init(theta), states, jax.random.PRNGKey(2))
    assert jax.tree.structure(new_theta) == jax.tree.structure(theta)
    assert jax.tree.structure(new_states) == jax.tree.structure(states)
    assert {"meta_loss", "inner_loss", "grad_norm"} <= set(metrics)
    assert all(np.isfinite(float(value)) for value in metrics.values())


def test_an_unregistered_estimator_is_refused():
    with pytest.raises(L2OError, match="config key estimator"):
        TrainConfig.from_dict({"estimator": "spsa"})


def test_every_estimator_class_is_registered(setup):
    """A gradient estimator written in l2o.meta but built by no ESTIMATORS entry could never be
    chosen: every dataclass there with ``init_states`` and ``grad`` must be some entry's type."""
    import importlib
    import inspect
    import pkgutil

    import l2o.meta

    task, lopt, _ = setup
    config = TrainConfig(num_steps=10, unroll_length=5)
    built = {type(build(config.estimator, task, lopt, (), unroll_length=5, horizon=10, objective=MetaLoss(),
                        keep_optimizer_state=True)) for build in ESTIMATORS.values()}
    written = set()
    for module_info in pkgutil.iter_modules(l2o.meta.__path__):
        module = importlib.import_module(f"l2o.meta.{module_info.name}")
        written |= {cls for _, cls in inspect.getmembers(module, inspect.isclass)
                    if cls.__module__ == module.__name__ and dataclasses.is_dataclass(cls)
                    and all(hasattr(cls, name) for name in ("init_states", "grad"))}
    assert written == built
