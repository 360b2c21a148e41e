"""RNNProp (Lv et al. 2017, "Learning Gradient Descent: Better Generalization and Longer Horizons").

A coordinatewise LSTM like DM, but its inputs are Adam's normalized moments, so it never sees
the raw gradient scale, and its output is bounded: ``update = -alpha * tanh(network output)``.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from l2o.errors import L2OError
from l2o.optimizers import features, networks
from l2o.optimizers.base import per_coordinate


class RNNPropNetwork(nn.Module):
    """``(N, 2)`` inputs -> ELU embedding -> LSTM layers -> ``tanh`` of a linear read-out ``(N,)``."""

    input_units: int
    forget_bias: float
    direction_init_scale: float

    @nn.compact
    def __call__(self, inputs, state):
        x = jax.nn.elu(nn.Dense(self.input_units)(inputs))
        x, state = networks.lstm_layers(x, state, self.forget_bias)
        readout = networks.head(kernel_init=networks.scaled_normal(self.direction_init_scale))
        return jnp.tanh(readout(x)[:, 0]), state


class RNNPropState(NamedTuple):
    """Step count (int32 scalar), Adam moments ``(N,)`` each, LSTM state per layer ``(N, H)``
    (float32); ``structure``: the parameters' :func:`~l2o.optimizers.base.structure_witness`."""

    count: jax.Array
    momentum: jax.Array
    second_moment: jax.Array
    hidden: tuple
    structure: object


@dataclasses.dataclass(frozen=True)
class RNNProp:
    """The RNNProp optimizer.

    Args:
      layers: LSTM hidden sizes.
      beta_1: decay of the gradient average ``m``.
      beta_2: decay of the squared-gradient average ``v``.
      alpha: largest update magnitude per coordinate (the learning-rate multiplier).
      epsilon: added to ``v`` before the square root.
      input_units: width of the ELU layer that embeds the two inputs.
      forget_bias: added to the LSTM forget gates.
      direction_init_scale: scale of the read-out's initial weights; small, so that an
        untrained optimizer takes small steps.
    """

    layers: tuple[int, ...] = (20, 20)
    beta_1: float = 0.9
    beta_2: float = 0.9
    alpha: float = 0.1
    epsilon: float = 1e-10
    input_units: int = 20
    forget_bias: float = 1.0
    direction_init_scale: float = 0.01
    name: ClassVar[str] = "RNNProp"

    def __post_init__(self):
        object.__setattr__(self, "layers", networks.layer_sizes(self.layers))
        for name in ("beta_1", "beta_2"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise L2OError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.alpha <= 0 or self.epsilon <= 0 or self.input_units < 1:
            raise L2OError("alpha, epsilon and input_units must be positive")

    @property
    def _network(self) -> RNNPropNetwork:
        return RNNPropNetwork(self.input_units, self.forget_bias, self.direction_init_scale)

    def init(self, key: jax.Array):
        """Draws meta-parameters: flax variables of the embedding, the LSTM and the read-out."""
        return self._network.init(key, jnp.zeros((1, 2)), networks.lstm_zero_state(self.layers, 1))

    def transform(self, theta) -> optax.GradientTransformationExtraArgs:
        """The optimizer defined by ``theta``; updates are added to the parameters."""
        network = self._network

        def init_state(size, dtype, params):
            hidden = networks.lstm_zero_state(self.layers, size, dtype)
            return RNNPropState(jnp.zeros((), jnp.int32), jnp.zeros(size, dtype), jnp.zeros(size, dtype), hidden, None)

        def step(flat, state, grads):
            count = state.count + 1
            momentum = features.ema(state.momentum, flat, self.beta_1)
            second_moment = features.ema(state.second_moment, jnp.square(flat), self.beta_2)
            inputs = features.adam_normalized(
                features.debias(momentum, self.beta_1, count),
                features.debias(second_moment, self.beta_2, count),
                flat,
                self.epsilon,
            )
            direction, hidden = network.apply(theta, inputs, state.hidden)
            new_state = RNNPropState(count, momentum, second_moment, hidden, state.structure)
            return -self.alpha * direction, new_state

        return per_coordinate(init_state, step)
