"""Input and output transformations shared by learned optimizer architectures.

All functions act elementwise on a flat gradient vector of shape ``(N,)`` and return
per-coordinate features of shape ``(N, F)``.
"""

from __future__ import annotations

import jax.numpy as jnp

PREPROCESSING = ("none", "log_sign", "log_rescale")


def identity_features(gradients: jnp.ndarray) -> jnp.ndarray:
    """The raw gradient as a single feature: ``(N,) -> (N, 1)``."""
    return gradients[:, None]


def log_and_sign(gradients: jnp.ndarray, k: float = 5.0) -> jnp.ndarray:
    """Andrychowicz et al. (2016), appendix A: ``(N,) -> (N, 2)``.

    Feature 0 is ``max(log|g| / k, -1)`` (the magnitude on a log scale, floored for gradients
    below ``e^-k``); feature 1 is ``clip(g * e^k, -1, 1)`` (the sign, linear near zero).
    """
    tiny = jnp.finfo(gradients.dtype).tiny
    log_magnitude = jnp.maximum(jnp.log(jnp.abs(gradients) + tiny) / k, -1.0)
    sign = jnp.clip(gradients * jnp.exp(k), -1.0, 1.0)
    return jnp.stack([log_magnitude, sign], axis=-1)


def log_rescale(gradients: jnp.ndarray, min_log_gradient: float = -30.0) -> jnp.ndarray:
    """The notebook's signed log rescaling: ``(N,) -> (N, 1)``.

    Maps ``|g|`` in ``[e^m, 1]`` linearly in ``log|g|`` onto ``[0, 1]`` (``m = min_log_gradient``)
    and keeps the sign of ``g``: ``sign(g) * (log(|g| + e^(m-5)) - m) / (-m)``.
    """
    floor = jnp.exp(min_log_gradient - 5.0)
    magnitude = (jnp.log(jnp.abs(gradients) + floor) - min_log_gradient) / (-min_log_gradient)
    return (jnp.sign(gradients) * magnitude)[:, None]


def exp_rescale(outputs: jnp.ndarray, min_log_gradient: float = -30.0) -> jnp.ndarray:
    """Inverse of :func:`log_rescale` for network outputs: ``sign(u) * exp(m (1 - |u|))``.

    An output of magnitude 1 is an update of magnitude 1, magnitude 0 an update of ``e^m``.
    """
    return jnp.sign(outputs) * jnp.exp(min_log_gradient * (1.0 - jnp.abs(outputs)))
