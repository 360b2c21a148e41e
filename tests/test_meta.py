"""Unrolls, meta-losses and the truncated-BPTT meta-gradient."""

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from l2o.errors import L2OError
from l2o.meta import MetaLoss, fresh_state, step_weights, trajectory, truncated_unroll
from l2o.meta.es import PES
from l2o.meta.truncated import initial_inner_states, truncated_bptt_loss
from l2o.optimizers import DM, get_baseline
from l2o.tasks import quadratic, scaled_quadratic


def test_step_weights_and_log_objective():
    np.testing.assert_allclose(step_weights("sum", 3), [1, 1, 1])
    np.testing.assert_allclose(step_weights("mean", 4), [0.25] * 4)
    np.testing.assert_allclose(step_weights("final", 3), [0, 0, 1])
    losses = jnp.array([4.0, 2.0, 1e-6])
    initial = jnp.full(3, 4.0)
    assert float(MetaLoss("sum")(losses, initial)) == pytest.approx(6.000001)
    assert float(MetaLoss("final", log_objective=True)(losses, initial)) == pytest.approx(np.log(1e-6), rel=1e-5)
    with pytest.raises(L2OError, match="unknown meta-loss weighting"):
        step_weights("median", 3)


def test_scaled_objective_is_relative_to_the_initial_loss():
    """Keras L2O's loss_args: (l + e) / (l0 + e), its log, and the numerator epsilon switch."""
    losses, initial, e = jnp.array([8.0, 0.0]), jnp.array([4.0, 4.0]), 1e-6
    scaled = MetaLoss("sum", scale_objective=True, epsilon=e)
    np.testing.assert_allclose(scaled.terms(losses, initial), [(8 + e) / (4 + e), e / (4 + e)], rtol=1e-6)
    logged = MetaLoss("mean", log_objective=True, scale_objective=True, epsilon=e)
    np.testing.assert_allclose(logged.terms(losses, initial), 0.5 * np.log([(8 + e) / (4 + e), e / (4 + e)]), rtol=1e-5)
    bare = MetaLoss("sum", log_objective=True, scale_objective=True, epsilon=e, numerator_epsilon=False)
    np.testing.assert_allclose(bare.terms(losses, initial), np.log([8 / (4 + e) + e, e]), rtol=1e-5)


def test_max_multiplier_cuts_a_run_that_blows_up():
    """A run whose loss passes max_multiplier x its initial loss ends; the next step starts anew."""
    task = quadratic(num_dims=3, batch_size=4)
    tx = get_baseline("SGD")(10.0)  # diverges
    state = fresh_state(task, tx, jax.random.PRNGKey(0))
    _, free = truncated_unroll(task, tx, state, 6, horizon=100)
    _, cut = truncated_unroll(task, tx, state, 6, horizon=100, max_multiplier=2.0)
    first = int(np.argmax(np.asarray(free.loss) > 2.0 * float(state.initial_loss)))
    assert 0 <= first < 5
    np.testing.assert_allclose(cut.loss[: first + 1], free.loss[: first + 1], rtol=1e-6)
    np.testing.assert_array_equal(cut.run_step[: first + 2], [*range(1, first + 2), 1])
    assert float(cut.initial_loss[first + 1]) != float(state.initial_loss)  # a new instance


def test_truncations_continue_the_same_run_and_restart_at_the_horizon():
    """Two truncations of 5 steps reproduce a 10-step run; the next one starts a new run."""
    task = quadratic(num_dims=3, batch_size=4)
    tx = get_baseline("Adam")(0.05)
    state = fresh_state(task, tx, jax.random.PRNGKey(0))
    reference, _ = trajectory(task, tx, state.inst, state.params, state.key, 10)
    unroll = jax.jit(lambda s: truncated_unroll(task, tx, s, 5, horizon=10))
    state, first = unroll(state)
    state, second = unroll(state)
    np.testing.assert_allclose(jnp.concatenate([first.loss, second.loss]), reference[1:], rtol=1e-5)
    np.testing.assert_allclose(first.initial_loss, reference[0], rtol=1e-5)
    assert int(state.step) == 10
    np.testing.assert_array_equal(jnp.concatenate([first.run_step, second.run_step]), np.arange(1, 11))
    new_state, third = unroll(state)
    assert int(new_state.step) == 5
    np.testing.assert_array_equal(third.run_step, np.arange(1, 6))
    assert not np.allclose(new_state.inst["w"], state.inst["w"])
    assert float(third.loss[0]) > float(second.loss[-1])  # a fresh instance starts far from its optimum


def test_a_fresh_optimizer_state_every_truncation():
    """Without keep_optimizer_state a truncation restarts Adam: its first step is lr * sign(g)."""
    task = quadratic(num_dims=3, batch_size=4)
    tx = get_baseline("Adam")(0.05)
    state = fresh_state(task, tx, jax.random.PRNGKey(0))
    state, _ = truncated_unroll(task, tx, state, 4, horizon=10)
    flat = lambda tree: jax.flatten_util.ravel_pytree(tree)[0]
    grads = flat(jax.grad(task.loss)(state.params, state.inst, jax.random.PRNGKey(0)))  # full batch: key unused
    moved = {}
    for keep in (True, False):
        after, _ = truncated_unroll(task, tx, state, 1, horizon=10, keep_optimizer_state=keep)
        moved[keep] = np.asarray(flat(after.params) - flat(state.params))
        assert int(after.step) == 5  # the run goes on either way
    np.testing.assert_allclose(moved[False], -0.05 * np.sign(grads), rtol=1e-4)
    assert not np.allclose(moved[True], -0.05 * np.sign(grads), rtol=1e-2)


def _meta_objective(theta, lopt, task, state, second_derivatives):
    loss_fn = truncated_bptt_loss(
        task, lopt, unroll_length=6, horizon=6, second_derivatives=second_derivatives
    )
    return loss_fn(theta, jax.tree.map(lambda x: x[None], state))[0]


def test_meta_gradient_matches_finite_differences():
    """With second derivatives, the BPTT meta-gradient is the exact derivative of the meta-loss."""
    with jax.enable_x64(True):
        task = scaled_quadratic(num_dims=3)
        lopt = DM(layers=(5,), preprocess="none", output_scale=0.3)
        theta = jax.tree.map(lambda a: a.astype(jnp.float64), lopt.init(jax.random.PRNGKey(0)))
        state = fresh_state(task, lopt.transform(theta), jax.random.PRNGKey(1))
        state = jax.tree.map(lambda a: a.astype(jnp.float64) if a.dtype == jnp.float32 else a, state)
        objective = lambda t: _meta_objective(t, lopt, task, state, True)
        grad = jax.grad(objective)(theta)
        direction = jax.tree.map(lambda a: jax.random.normal(jax.random.PRNGKey(2), a.shape, a.dtype), theta)
        eps = 1e-6
        plus = objective(jax.tree.map(lambda a, d: a + eps * d, theta, direction))
        minus = objective(jax.tree.map(lambda a, d: a - eps * d, theta, direction))
        numeric = (plus - minus) / (2 * eps)
        analytic = sum(jnp.vdot(g, d) for g, d in zip(jax.tree.leaves(grad), jax.tree.leaves(direction)))
        assert float(analytic) == pytest.approx(float(numeric), rel=1e-5)


def test_without_second_derivatives_the_inner_gradient_is_a_constant():
    """Stopping the gradient changes the meta-gradient (the Hessian term is dropped)."""
    task = scaled_quadratic(num_dims=3)
    lopt = DM(layers=(5,), preprocess="none", output_scale=0.3)
    theta = lopt.init(jax.random.PRNGKey(0))
    state = fresh_state(task, lopt.transform(theta), jax.random.PRNGKey(1))
    full = jax.grad(lambda t: _meta_objective(t, lopt, task, state, True))(theta)
    first_order = jax.grad(lambda t: _meta_objective(t, lopt, task, state, False))(theta)
    assert jax.tree.all(jax.tree.map(lambda a: bool(jnp.all(jnp.isfinite(a))), first_order))
    difference = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), full, first_order)
    assert max(jax.tree.leaves(difference)) > 1e-4


def test_loss_before_step_reuses_the_gradient_evaluation_one_step_earlier():
    """The same run, its losses at steps 0..9 (where each gradient is taken) instead of 1..10; a
    restart's first loss is the new run's initial loss."""
    task = quadratic(num_dims=3, batch_size=4)
    tx = get_baseline("Adam")(0.05)
    state = fresh_state(task, tx, jax.random.PRNGKey(0))
    reference, _ = trajectory(task, tx, state.inst, state.params, state.key, 10)
    unroll = jax.jit(lambda s: truncated_unroll(task, tx, s, 5, horizon=10, loss_before_step=True))
    after, _ = truncated_unroll(task, tx, state, 5, horizon=10)
    state, first = unroll(state)
    np.testing.assert_allclose(jax.flatten_util.ravel_pytree(state.params)[0],
                               jax.flatten_util.ravel_pytree(after.params)[0], rtol=1e-6)  # the same steps
    state, second = unroll(state)
    np.testing.assert_allclose(jnp.concatenate([first.loss, second.loss]), reference[:-1], rtol=1e-5)
    _, third = unroll(state)
    np.testing.assert_allclose(third.loss[0], third.initial_loss[0], rtol=1e-6)
    assert float(third.initial_loss[0]) != float(first.initial_loss[0])


@pytest.mark.parametrize("estimator", ["truncated", "pes"])
def test_with_loss_before_step_a_one_step_truncation_sees_only_initial_losses(estimator):
    """Each estimator passes the setting on: a 1-step truncation's loss is then the runs' initial
    loss, which no meta-parameter changes, so the meta-gradient vanishes (it does not without)."""
    task = quadratic(num_dims=3, batch_size=4)
    lopt = DM(layers=(5,), preprocess="none", output_scale=0.3)
    theta = lopt.init(jax.random.PRNGKey(0))
    norms = {}
    for before in (False, True):
        objective = MetaLoss(loss_before_step=before)
        if estimator == "truncated":
            states = initial_inner_states(task, lopt, theta, jax.random.PRNGKey(1), 2, horizon=10)
            loss_fn = truncated_bptt_loss(task, lopt, unroll_length=1, horizon=10, objective=objective)
            (loss, _), grads = jax.value_and_grad(loss_fn, has_aux=True)(theta, states)
            initial = states.initial_loss
        else:
            pes = PES(task, lopt, unroll_length=1, horizon=10, objective=objective)
            states = pes.init_states(theta, jax.random.PRNGKey(1), 2)
            grads, _, metrics = pes.grad(theta, states, jax.random.PRNGKey(2))
            loss, initial = metrics["meta_loss"], states.inner.initial_loss
        norms[before] = float(optax.global_norm(grads))
        if before:
            np.testing.assert_allclose(loss, jnp.mean(initial), rtol=1e-5)
    assert norms[True] < 1e-6 * norms[False]
