"""Input and output transformations shared by learned optimizer architectures.

All functions act elementwise on a flat gradient vector of shape ``(N,)`` and return
per-coordinate features of shape ``(N, F)``.
"""

from __future__ import annotations

import jax
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


# Accumulators shared by RNNProp, the Scale optimizers and AdafacMLP. They act elementwise
# unless stated; ``decay`` may be a scalar or an array broadcastable to the accumulator.


def ema(average: jnp.ndarray, value: jnp.ndarray, decay) -> jnp.ndarray:
    """Exponential moving average: ``decay * average + (1 - decay) * value``."""
    return decay * average + (1.0 - decay) * value


def debias(average: jnp.ndarray, decay, count) -> jnp.ndarray:
    """Adam's bias correction of an average started at zero, after ``count >= 1`` updates."""
    return average / (1.0 - decay**count)


def adam_normalized(momentum: jnp.ndarray, second_moment: jnp.ndarray, gradients: jnp.ndarray,
                    epsilon: float) -> jnp.ndarray:
    """RNNProp's inputs (Lv et al. 2017), ``(N,) x 3 -> (N, 2)``: ``m / sqrt(v + eps)`` and
    ``g / sqrt(v + eps)`` for debiased moments ``m`` and ``v``."""
    scale = jax.lax.rsqrt(second_moment + epsilon)
    return jnp.stack([momentum * scale, gradients * scale], axis=-1)


def rms_scaled(gradients: jnp.ndarray, mean_square: jnp.ndarray, epsilon: float) -> jnp.ndarray:
    """``asinh(g / sqrt(ms + eps))``: RMS-normalized gradient, compressed beyond magnitude 1."""
    return jnp.arcsinh(gradients * jax.lax.rsqrt(mean_square + epsilon))


def timescale_decays(decay: jnp.ndarray, timescales: int) -> jnp.ndarray:
    """Decays ``decay ** (0.5 ** s)`` for ``s = 0..timescales-1``: each timescale about twice
    as long as the one before (Wichrowska et al. 2017, eq. 13). ``(N,) -> (N, T)``."""
    return decay[..., None] ** (0.5 ** jnp.arange(timescales, dtype=decay.dtype))


def relative_log_magnitude(second_moments: jnp.ndarray, epsilon: float) -> jnp.ndarray:
    """Log second moment at each timescale minus its mean over timescales (Wichrowska et al.
    2017, eq. 4): ``(N, T) -> (N, T)``."""
    logs = jnp.log(second_moments + epsilon)
    return logs - jnp.mean(logs, axis=-1, keepdims=True)


def adafactor_accumulate(rows: jnp.ndarray, columns: jnp.ndarray, gradient: jnp.ndarray,
                         decays: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Adafactor's factored second moments of a tensor of shape ``(..., R, C)`` at ``D`` decays.

    Args:
      rows: ``(D, ..., R)`` running means over the last axis of ``g^2``.
      columns: ``(D, ..., C)`` running means over the second-to-last axis.
      gradient: ``(..., R, C)``.
      decays: ``(D,)``.
    """
    square = jnp.square(gradient)
    shape = (-1,) + (1,) * (gradient.ndim - 1)
    decays = decays.reshape(shape)
    return ema(rows, square.mean(-1), decays), ema(columns, square.mean(-2), decays)


def adafactor_estimate(rows: jnp.ndarray, columns: jnp.ndarray, epsilon: float) -> jnp.ndarray:
    """The rank-one second-moment estimate ``r c^T / mean(r)``: ``(D, ..., R), (D, ..., C) ->
    (D, ..., R, C)`` (Shazeer and Stern 2018)."""
    scale = rows.mean(-1, keepdims=True) + epsilon
    return rows[..., :, None] * columns[..., None, :] / scale[..., None]


def second_moment_normalize(inputs: jnp.ndarray, epsilon: float = 1e-5) -> jnp.ndarray:
    """Divides each feature (last axis) by its root mean square over the rows: ``(N, F)``."""
    return inputs * jax.lax.rsqrt(jnp.mean(jnp.square(inputs), axis=0, keepdims=True) + epsilon)


@jax.custom_jvp
def mean_squares(arrays) -> tuple:
    """The mean of the squares of each of several equally shaped arrays ``(N,)``, in float32
    (float64 for float64 arrays),
    as one variadic reduction: a single pass over all of them, where one reduction per array
    would read them one at a time.

    Differentiable in both modes (a custom JVP: XLA's variadic reduction has no derivative
    rule of its own, and symbolic-zero tangents, as a stop-gradient gives, are instantiated).
    """
    arrays = tuple(array.astype(jnp.promote_types(array.dtype, jnp.float32)) for array in arrays)
    zeros = tuple(jnp.zeros((), array.dtype) for array in arrays)
    sums = jax.lax.reduce(tuple(jnp.square(array) for array in arrays), zeros,
                          lambda left, right: tuple(a + b for a, b in zip(left, right)), (0,))
    return tuple(total / arrays[0].shape[0] for total in sums)


@mean_squares.defjvp
def _mean_squares_jvp(primals, tangents):
    (arrays,), (directions,) = primals, tangents
    values = mean_squares(arrays)
    derivative = tuple(2.0 / array.shape[0] * jnp.sum(array.astype(value.dtype) * direction.astype(value.dtype))
                       for array, direction, value in zip(arrays, directions, values))
    return values, derivative


def step_features(count: jnp.ndarray, timescales: tuple[float, ...]) -> jnp.ndarray:
    """``tanh(count / tau)`` for each ``tau``: the inner step count on a few scales, ``(len,)``."""
    return jnp.tanh(count / jnp.asarray(timescales, jnp.float32))
