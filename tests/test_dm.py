"""The DM optimizer: LSTM arithmetic, coordinatewise weight sharing, optax compatibility."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from l2o.errors import L2OError
from l2o.meta import trajectory
from l2o.optimizers import DM
from l2o.optimizers.features import log_and_sign
from l2o.tasks import quadratic


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def numpy_dm_update(theta, grads, hidden, output_scale):
    """Independent NumPy forward pass of the deep LSTM on LogAndSign features."""
    params = jax.tree.map(lambda a: np.asarray(a, np.float64), theta["params"])
    x = np.asarray(log_and_sign(jnp.asarray(grads)), np.float64)
    new_hidden = []
    for layer, (h, c) in enumerate(hidden):
        dense = params[f"Dense_{layer}"]
        z = np.concatenate([x, h], axis=1) @ dense["kernel"] + dense["bias"]
        i, f, g, o = np.split(z, 4, axis=1)
        c = sigmoid(f + 1.0) * c + sigmoid(i) * np.tanh(g)
        h = sigmoid(o) * np.tanh(c)
        new_hidden.append((h, c))
        x = h
    out = params[f"Dense_{len(hidden)}"]
    return output_scale * (x @ out["kernel"] + out["bias"])[:, 0], new_hidden


def test_update_matches_numpy_lstm_over_two_steps():
    lopt = DM(layers=(6, 4), preprocess="log_sign", output_scale=0.1)
    theta = lopt.init(jax.random.PRNGKey(0))
    tx = lopt.transform(theta)
    params = {"a": jnp.zeros((2, 3)), "b": jnp.zeros((5,))}
    state = tx.init(params)
    assert [h.shape for h, _ in state.hidden] == [(11, 6), (11, 4)]
    hidden = [(np.zeros((11, 6)), np.zeros((11, 6))), (np.zeros((11, 4)), np.zeros((11, 4)))]
    rng = np.random.default_rng(0)
    for _ in range(2):
        grads = {"a": rng.normal(size=(2, 3)).astype(np.float32), "b": rng.normal(size=5).astype(np.float32)}
        updates, state = tx.update(jax.tree.map(jnp.asarray, grads), state, params)
        flat = np.concatenate([grads["a"].ravel(), grads["b"]])
        expected, hidden = numpy_dm_update(theta, flat, hidden, 0.1)
        got = np.concatenate([np.ravel(updates["a"]), np.ravel(updates["b"])])
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)


def test_weights_are_shared_across_coordinates():
    """Permuting the coordinates of the gradient permutes the update the same way."""
    lopt = DM()
    tx = lopt.transform(lopt.init(jax.random.PRNGKey(1)))
    g = jax.random.normal(jax.random.PRNGKey(2), (50,))
    perm = jax.random.permutation(jax.random.PRNGKey(3), 50)
    u, _ = tx.update(g, tx.init(g))
    u_perm, _ = tx.update(g[perm], tx.init(g))
    np.testing.assert_allclose(u_perm, u[perm], rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("preprocess", ["none", "log_sign", "log_rescale"])
def test_untrained_optimizer_is_stable_on_quadratic(preprocess):
    task = quadratic()
    key = jax.random.PRNGKey(0)
    inst = task.sample(key)
    params = task.init(key, inst)
    lopt = DM(preprocess=preprocess, output_scale=0.1 if preprocess != "log_rescale" else 1.0)
    tx = lopt.transform(lopt.init(key))
    losses = jax.jit(lambda p: trajectory(task, tx, inst, p, key, 100)[0])(params)
    start, final = losses[0], losses[-1]
    assert np.isfinite(final) and final < 2 * start


def test_works_inside_optax_combinators():
    """A learned optimizer composes with clipping and multi_transform like any optax one."""
    lopt = DM(layers=(8,))
    learned = lopt.transform(lopt.init(jax.random.PRNGKey(0)))
    tx = optax.multi_transform(
        {"learned": optax.chain(optax.clip_by_global_norm(1.0), learned), "adam": optax.adam(0.1)},
        {"x0": "learned", "x1": "adam"},
    )
    params = {"x0": jnp.ones(3), "x1": jnp.ones(2)}
    state = tx.init(params)
    grads = {"x0": jnp.full(3, 10.0), "x1": jnp.full(2, 10.0)}
    updates, _ = tx.update(grads, state, params)
    np.testing.assert_allclose(updates["x1"], -0.1 * jnp.ones(2), rtol=1e-4)
    clipped = grads["x0"] / jnp.linalg.norm(grads["x0"])
    alone, _ = learned.update(clipped, learned.init(params["x0"]))
    np.testing.assert_allclose(updates["x0"], alone, rtol=1e-5)


def test_bad_hyperparameters_are_user_errors():
    with pytest.raises(L2OError, match="unknown preprocess"):
        DM(preprocess="log")
    with pytest.raises(L2OError, match="min_log_gradient must be negative"):
        DM(min_log_gradient=3.0)


def test_symmetric_optimizer_is_odd_in_the_gradient_history():
    lopt = DM(layers=(8, 8), symmetric=True)
    tx = lopt.transform(lopt.init(jax.random.PRNGKey(4)))
    grads = jax.random.normal(jax.random.PRNGKey(5), (3, 6))
    state_pos = state_neg = tx.init(grads[0])
    for g in grads:
        u_pos, state_pos = tx.update(g, state_pos)
        u_neg, state_neg = tx.update(-g, state_neg)
        np.testing.assert_allclose(u_neg, -u_pos, rtol=1e-5, atol=1e-8)
    assert float(jnp.max(jnp.abs(u_pos))) > 0
