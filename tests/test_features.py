"""Gradient preprocessing matches its formulas."""

import jax.numpy as jnp
import numpy as np

from l2o.optimizers import features


def test_log_and_sign_formula():
    g = np.array([1e-9, -1e-3, 0.5, -20.0], np.float32)
    out = np.asarray(features.log_and_sign(jnp.asarray(g), k=5.0))
    assert out.shape == (4, 2)
    np.testing.assert_allclose(out[:, 0], np.maximum(np.log(np.abs(g)) / 5, -1), rtol=1e-5)
    np.testing.assert_allclose(out[:, 1], np.clip(g * np.exp(5), -1, 1), rtol=1e-5)


def test_log_rescale_maps_range_to_unit_interval_with_sign():
    m = -30.0
    g = jnp.array([1.0, -1.0, np.exp(m), -np.exp(-15.0)], jnp.float32)
    out = np.asarray(features.log_rescale(g, m))[:, 0]
    # e^m maps to log(1 + e^-5) / 30, about 2e-4, because of the floor e^(m-5) inside the log.
    np.testing.assert_allclose(out, [1.0, -1.0, 0.0, -0.5], atol=3e-4)


def test_exp_rescale_inverts_log_rescale():
    g = jnp.array([0.3, -1e-4, 2e-10, -0.9], jnp.float32)
    roundtrip = features.exp_rescale(features.log_rescale(g, -30.0)[:, 0], -30.0)
    np.testing.assert_allclose(roundtrip, g, rtol=1e-4)


def test_mean_squares_of_several_arrays_in_one_reduction():
    rng = np.random.default_rng(0)
    arrays = [rng.normal(size=1000).astype(np.float32) * scale for scale in (1e-6, 1.0, 1e3)]
    result = features.mean_squares(tuple(jnp.asarray(a) for a in arrays))
    np.testing.assert_allclose(result, [np.mean(np.square(a.astype(np.float64))) for a in arrays], rtol=1e-5)
