"""Baselines follow their published update rules, checked against a NumPy re-derivation."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from l2o.errors import L2OError
from l2o.optimizers import BASELINES, get_baseline

GRADIENTS = [np.array([0.5, -2.0, 1e-3]), np.array([-0.1, 1.0, 3.0]), np.array([2.0, 0.2, -0.7])]


def numpy_reference(name, lr, grads):
    x = np.zeros(3)
    m = np.zeros(3)
    v = np.zeros(3)
    for t, g in enumerate(grads, start=1):
        if name == "SGD":
            x = x - lr * g
        elif name == "Momentum":
            m = 0.9 * m + g
            x = x - lr * m
        elif name == "NAG":
            m = 0.9 * m + g
            x = x - lr * (g + 0.9 * m)
        elif name == "RMSProp":
            v = 0.9 * v + 0.1 * g**2
            x = x - lr * g / np.sqrt(v + 1e-8)
        elif name == "Adam":
            m = 0.9 * m + 0.1 * g
            v = 0.999 * v + 0.001 * g**2
            m_hat, v_hat = m / (1 - 0.9**t), v / (1 - 0.999**t)
            x = x - lr * m_hat / (np.sqrt(v_hat) + 1e-8)
    return x


@pytest.mark.parametrize("name", list(BASELINES))
def test_baseline_matches_update_rule(name):
    tx = BASELINES[name](0.05)
    params = jnp.zeros(3)
    state = tx.init(params)
    for g in GRADIENTS:
        updates, state = tx.update(jnp.asarray(g, jnp.float32), state, params)
        params = optax.apply_updates(params, updates)
    np.testing.assert_allclose(params, numpy_reference(name, 0.05, GRADIENTS), rtol=2e-5, atol=1e-7)


def test_lookup_is_case_insensitive_and_rejects_unknown_names():
    assert get_baseline("adam") is BASELINES["Adam"]
    with pytest.raises(L2OError, match="unknown optimizer 'adagrad'"):
        get_baseline("adagrad")
