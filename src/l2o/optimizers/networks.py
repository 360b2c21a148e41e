"""Recurrent and feed-forward networks that learned optimizers apply to many rows at once.

Every network here maps inputs of shape ``(N, F)`` (one row per coordinate, or per tensor) to
outputs with the same leading axis; weights are shared across rows.
"""

from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from l2o.errors import L2OError


def lstm_layers(inputs, state, forget_bias: float = 1.0):
    """A stack of LSTM layers, called inside a compact flax module (its dense layers become
    that module's ``Dense_0``, ``Dense_1``, ...).

    Args:
      inputs: ``(N, F)``.
      state: one ``(h, c)`` pair per layer, each ``(N, H_layer)``; the layer sizes are read from it.
      forget_bias: added to the forget gate (Jozefowicz et al. 2015).

    Returns:
      The last layer's ``h`` (``(N, H_last)``; the inputs if there are no layers) and the new state.
      Each layer computes its four gates with one matrix product on ``[x, h]``.
    """
    x = inputs
    new_state = []
    for h, c in state:
        gates = nn.Dense(4 * h.shape[-1])(jnp.concatenate([x, h], axis=-1))
        i, f, g, o = jnp.split(gates, 4, axis=-1)
        c = jax.nn.sigmoid(f + forget_bias) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        new_state.append((h, c))
        x = h
    return x, tuple(new_state)


def lstm_zero_state(layers: tuple[int, ...], rows: int, dtype=jnp.float32) -> tuple:
    """The zero state of :func:`lstm_layers` for ``rows`` rows."""
    return tuple((jnp.zeros((rows, size), dtype), jnp.zeros((rows, size), dtype)) for size in layers)


class GRU(nn.Module):
    """One GRU layer (Cho et al. 2014): ``(N, F)`` and ``(N, H)`` to the new ``(N, H)``."""

    size: int

    @nn.compact
    def __call__(self, inputs, hidden):
        gates = nn.Dense(2 * self.size)(jnp.concatenate([inputs, hidden], axis=-1))
        reset, update = jnp.split(jax.nn.sigmoid(gates), 2, axis=-1)
        candidate = jnp.tanh(nn.Dense(self.size)(jnp.concatenate([inputs, reset * hidden], axis=-1)))
        return update * hidden + (1.0 - update) * candidate


def scaled_normal(scale: float):
    """Kernel initializer with standard deviation ``scale / sqrt(fan_in)`` (LeCun normal times
    ``scale``)."""
    return nn.initializers.variance_scaling(scale**2, "fan_in", "normal")


class MLP(nn.Module):
    """``(N, F) -> (N, outputs)``: hidden layers with ``activation``, then a linear layer."""

    hidden: tuple[int, ...]
    outputs: int
    activation: Callable = jax.nn.relu

    @nn.compact
    def __call__(self, x):
        for size in self.hidden:
            x = self.activation(nn.Dense(size)(x))
        return nn.Dense(self.outputs)(x)


def head(outputs: int = 1, kernel_init=nn.initializers.lecun_normal(), bias: float = 0.0) -> nn.Dense:
    """A linear read-out with the given kernel initializer and constant bias."""
    return nn.Dense(outputs, kernel_init=kernel_init, bias_init=nn.initializers.constant(bias))


def layer_sizes(layers, allow_empty: bool = False) -> tuple[int, ...]:
    """``layers`` as a tuple of ints, or an :class:`L2OError` if a size is not positive (or the
    list is empty and ``allow_empty`` is False)."""
    sizes = tuple(int(size) for size in layers)
    if (not sizes and not allow_empty) or any(size < 1 for size in sizes):
        raise L2OError(f"layers must be {'' if allow_empty else 'one or more '}positive sizes, got {list(sizes)}")
    return sizes
