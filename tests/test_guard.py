"""Safety in use, over every registered learned architecture (``l2o.optimizers.LEARNED``):
:func:`l2o.optimizers.guard.guarded` (what ``l2o.load_optax`` returns) changes nothing on finite
gradients, skips a non-finite step without touching the state, freezes integer leaves, and no
parameter tree a user can hand it (integer, ``None`` and zero-size leaves; parameters of scale
1e30 or 1e-30) ends with NaN parameters. Unguarded, a zero-size leaf changes no update."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers.architectures import build

import l2o
from l2o.optimizers import LEARNED
from l2o.optimizers.guard import guarded


def _params(scale=1.0):
    return {"w": scale * jnp.linspace(-1.0, 1.0, 12).reshape(3, 4), "b": scale * jnp.array([0.5, -0.2, 0.1, 0.0])}


def _grads(params):
    return jax.grad(lambda p: jnp.sum((p["w"].sum(0) + p["b"] - 1.0) ** 2))(params)


def _transform(name):
    lopt = build(name)
    return lopt.transform(lopt.init(jax.random.PRNGKey(0)))


def _guard_state(state):
    """The :class:`GuardState` inside a :func:`guarded` optimizer's state."""
    return state.inner_states["optimized"].inner_state


def _equal(a, b) -> bool:
    """Same structure, and the same values up to float32 rounding (XLA may fuse the two
    compiled computations differently)."""
    return jax.tree.structure(a) == jax.tree.structure(b) and all(
        np.allclose(x, y, rtol=1e-5, atol=1e-10) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.mark.parametrize("name", LEARNED)
def test_guarded_optimizer_equals_the_bare_one_and_skips_non_finite_steps(name):
    bare, safe = _transform(name), guarded(_transform(name))
    params = _params()
    bare_state, safe_state = bare.init(params), safe.init(params)

    @jax.jit
    def steps(bare_state, safe_state, params, poison):
        grads = _grads(params)
        bare_updates, bare_state = bare.update(grads, bare_state, params)
        safe_updates, new_safe_state = safe.update(grads, safe_state, params)
        poisoned = jax.tree.map(lambda g: g.at[0].set(poison), grads)
        skipped_updates, skipped_state = safe.update(poisoned, new_safe_state, params)
        return bare_updates, bare_state, safe_updates, new_safe_state, skipped_updates, skipped_state

    for poison in (jnp.nan, jnp.inf):
        bare_updates, bare_state, safe_updates, new_safe_state, skipped_updates, skipped_state = steps(
            bare_state, safe_state, params, poison)
        guard = _guard_state(new_safe_state)
        assert _equal(safe_updates, bare_updates) and _equal(guard.inner_state, bare_state)
        assert all(np.all(np.asarray(u) == 0) for u in jax.tree.leaves(skipped_updates))
        assert _equal(_guard_state(skipped_state).inner_state, guard.inner_state)
        assert int(_guard_state(skipped_state).skipped) == int(guard.skipped) + 1
        params, safe_state = optax.apply_updates(params, bare_updates), skipped_state
    assert int(optax.tree_utils.tree_get(safe_state, "skipped")) == 2


@pytest.mark.parametrize("name", LEARNED)
def test_no_parameter_tree_ends_with_nan_parameters(name):
    """Integer leaves (``float0`` gradients from ``allow_int``) stay as they are, ``None`` and
    zero-size leaves pass through, float leaves at any scale stay finite over three steps."""
    tx = guarded(_transform(name))

    def loss(p):
        return jnp.sum(jnp.square(p["w"])) + jnp.sum(p["b"]) + jnp.sum(p["empty"])

    @jax.jit
    def run(params):
        state = tx.init(params)
        for _ in range(3):
            updates, state = tx.update(jax.grad(loss, allow_int=True)(params), state, params)
            params = optax.apply_updates(params, updates)
        return params

    for scale in (1e30, 1e-30, 1.0):
        params = {**_params(scale), "count": jnp.arange(3), "none": None, "empty": jnp.zeros((0, 5))}
        final = run(params)
        assert jax.tree.map(lambda x: (x.shape, x.dtype), final) == jax.tree.map(lambda x: (x.shape, x.dtype), params)
        np.testing.assert_array_equal(final["count"], params["count"])
        assert final["none"] is None
        assert all(np.all(np.isfinite(final[key])) for key in ("w", "b")), (scale, final)


@pytest.mark.parametrize("name", LEARNED)
def test_a_zero_size_leaf_changes_no_update(name):
    tx = _transform(name)

    @jax.jit
    def update(params):
        return tx.update(_grads_with_empty(params), tx.init(params), params)[0]

    with_empty = update({**_params(), "empty": jnp.zeros((0, 5))})
    assert with_empty["empty"].shape == (0, 5)
    assert _equal({key: with_empty[key] for key in ("b", "w")}, update(_params()))


def _grads_with_empty(params):
    grads = _grads({key: params[key] for key in ("w", "b")})
    return {**grads, **({"empty": jnp.zeros((0, 5))} if "empty" in params else {})}


def test_load_optax_returns_the_guarded_optimizer(tmp_path):
    lopt = build("AdafacMLP")
    l2o.saved_optimizer.save_optimizer(tmp_path, lopt, lopt.init(jax.random.PRNGKey(0)), epoch=1, num_epochs=1)
    tx = l2o.load_optax(tmp_path)
    params = _params()
    updates, state = tx.update(jax.tree.map(lambda g: g * jnp.nan, _grads(params)), tx.init(params), params)
    assert all(np.all(np.asarray(u) == 0) for u in jax.tree.leaves(updates))
    assert int(optax.tree_utils.tree_get(state, "skipped")) == 1
