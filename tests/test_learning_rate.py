"""``l2o.load_optax(name, learning_rate=...)``, over every shipped optimizer: a number multiplies
every update, a schedule multiplies step ``t``'s update by its value at ``t`` (checked against
the unscaled optimizer's updates times factors computed here in numpy), a skipped non-finite step
does not advance the schedule, 1.0 is the optimizer as meta-trained, and a multiplier a user can
get wrong is a one-line error."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import l2o

NUM_STEPS = 6


def _params():
    return {"w": jnp.linspace(-1.0, 1.0, 12).reshape(3, 4), "b": jnp.array([0.5, -0.2, 0.1, 0.0])}


def _grads(params, step):
    return jax.grad(lambda p: jnp.sum((p["w"].sum(0) * (1.0 + 0.1 * step) + p["b"] - 1.0) ** 2))(params)


def _updates(tx, grads_by_step):
    """The updates ``tx`` gives for the given gradients, one list entry per step; the parameters
    follow the unscaled optimizer's trajectory in every call, so only the multiplier differs."""
    params, state, out = _params(), tx.init(_params()), []
    for grads in grads_by_step:
        updates, state = tx.update(grads, state, params)
        out.append(updates)
    return out


def _grads_by_step():
    return [_grads(_params(), step) for step in range(NUM_STEPS)]


def _close(a, b):
    return all(np.allclose(x, y, rtol=1e-6, atol=1e-9) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _times(factor, updates):
    return jax.tree.map(lambda u: factor * np.asarray(u), updates)


def _identical(a, b):
    return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.mark.parametrize("name", l2o.pretrained.names())
def test_a_number_scales_every_update_and_one_changes_nothing(name):
    grads = _grads_by_step()
    plain = _updates(l2o.load_optax(name), grads)
    default = _updates(l2o.load_optax(name, learning_rate=1.0), grads)
    halved = _updates(l2o.load_optax(name, learning_rate=0.3), grads)
    assert all(_identical(a, b) for a, b in zip(plain, default))
    assert any(np.any(np.asarray(leaf) != 0) for leaf in jax.tree.leaves(plain))
    for p, h in zip(plain, halved):
        assert _close(_times(0.3, p), h)


@pytest.mark.parametrize("name", l2o.pretrained.names())
def test_a_schedule_multiplies_step_t_by_its_value_at_t(name):
    grads = _grads_by_step()
    plain = _updates(l2o.load_optax(name), grads)
    scheduled = _updates(l2o.load_optax(name, learning_rate=optax.linear_schedule(1.0, 0.0, NUM_STEPS)), grads)
    factors = 1.0 - np.arange(NUM_STEPS) / NUM_STEPS  # 1, 5/6, ..., 1/6: linear from 1 to 0 over the run
    for factor, p, s in zip(factors, plain, scheduled):
        assert _close(_times(factor, p), s)


def test_a_skipped_step_does_not_advance_the_schedule():
    name = l2o.pretrained.names()[0]
    grads = _grads_by_step()
    with_nan = [grads[0], jax.tree.map(lambda g: g * jnp.nan, grads[1]), *grads[1:4]]
    plain = _updates(l2o.load_optax(name), grads[:4])
    scheduled = _updates(l2o.load_optax(name, learning_rate=lambda count: 1.0 / (1.0 + count)), with_nan)
    assert all(np.all(np.asarray(u) == 0) for u in jax.tree.leaves(scheduled[1]))
    kept = [scheduled[0], *scheduled[2:]]
    for step, (p, s) in enumerate(zip(plain, kept)):
        assert _close(_times(1.0 / (1.0 + step), p), s)


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf"), "fast", None])
def test_a_bad_learning_rate_is_a_one_line_error(bad):
    with pytest.raises(l2o.L2OError, match="learning_rate must be") as caught:
        l2o.load_optax(l2o.pretrained.names()[0], learning_rate=bad)
    assert "\n" not in str(caught.value)
