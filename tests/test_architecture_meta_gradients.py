"""Meta-gradients of every registered learned architecture (``l2o.optimizers.LEARNED``): the
second-order truncated-BPTT meta-gradient is the exact derivative of the meta-loss (central
finite differences in float64), and the first-order one (``second_derivatives=False``, the
default of several presets) is finite and nonzero. One compiled program per architecture."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers.architectures import build

from l2o.meta.truncated import truncated_bptt_loss
from l2o.meta.unroll import fresh_state
from l2o.optimizers import LEARNED
from l2o.tasks import scaled_quadratic


@pytest.mark.parametrize("name", LEARNED)
def test_meta_gradients_are_exact_and_first_order_ones_finite(name):
    with jax.enable_x64(True):
        task = scaled_quadratic(num_dims=3)
        lopt = build(name)
        theta = jax.tree.map(lambda a: a.astype(jnp.float64) + 0.01, lopt.init(jax.random.PRNGKey(0)))
        start = fresh_state(task, lopt.transform(theta), jax.random.PRNGKey(1))
        states = jax.tree.map(lambda a: (a.astype(jnp.float64) if a.dtype == jnp.float32 else a)[None], start)
        exact = truncated_bptt_loss(task, lopt, unroll_length=3, horizon=6, second_derivatives=True)
        first_order = truncated_bptt_loss(task, lopt, unroll_length=3, horizon=6, second_derivatives=False)

        @jax.jit
        def measure(theta):
            value, grad = jax.value_and_grad(lambda t: exact(t, states)[0])(theta)
            return value, grad, jax.grad(lambda t: first_order(t, states)[0])(theta)

        _, grad, first_order_grad = measure(theta)
        direction = jax.tree.map(lambda a: jax.random.normal(jax.random.PRNGKey(2), a.shape, a.dtype), theta)
        analytic = sum(jnp.vdot(g, d) for g, d in zip(jax.tree.leaves(grad), jax.tree.leaves(direction)))
        eps = 1e-6
        plus, minus = (measure(jax.tree.map(lambda a, d, s=sign: a + s * eps * d, theta, direction))[0]
                       for sign in (1, -1))
        assert float(analytic) == pytest.approx(float((plus - minus) / (2 * eps)), rel=1e-4, abs=1e-9)
        leaves = jax.tree.leaves(first_order_grad)
        assert all(np.all(np.isfinite(leaf)) for leaf in leaves)
        assert sum(float(jnp.abs(leaf).sum()) for leaf in leaves) > 0
