"""DeepMind's coordinatewise deep LSTM optimizer (Andrychowicz et al. 2016).

Every coordinate of the optimizee is processed by the same small LSTM (weights shared across
coordinates, one hidden state per coordinate). Its input is the (preprocessed) gradient of that
coordinate, its output the update that is added to it.
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


class DeepLSTM(nn.Module):
    """A stack of LSTM layers followed by a linear read-out to one number per row.

    Inputs have shape ``(N, F)``; the state is one ``(h, c)`` pair per layer, each ``(N, H)``;
    the output has shape ``(N,)``.
    """

    forget_bias: float = 1.0

    @nn.compact
    def __call__(self, inputs, state):
        x, new_state = networks.lstm_layers(inputs, state, self.forget_bias)
        return nn.Dense(1)(x)[:, 0], new_state


class DMState(NamedTuple):
    """Per-coordinate LSTM state: one ``(h, c)`` pair per layer, each of shape ``(N, H)``
    (float32); ``structure``: the parameters' :func:`~l2o.optimizers.base.structure_witness`."""

    hidden: tuple
    structure: object


@dataclasses.dataclass(frozen=True)
class DM:
    """The coordinatewise deep LSTM optimizer.

    Args:
      layers: hidden sizes of the LSTM layers; ``()`` gives a linear map of the inputs.
      preprocess: ``"none"`` (raw gradient), ``"log_sign"`` (DeepMind's LogAndSign with ``k``)
        or ``"log_rescale"`` (the notebook's signed log rescaling with ``min_log_gradient``,
        paired with the matching exponential output scaling).
      k: LogAndSign constant.
      min_log_gradient: natural log of the smallest gradient magnitude ``log_rescale`` resolves.
      output_scale: the network output is multiplied by this (after exponential rescaling).
      forget_bias: added to the LSTM forget gates.
      symmetric: make the optimizer an odd function of the gradient history, so that
        ``update(-g) = -update(g)``: the network also runs on the negated gradients (second
        half of the rows of its state) and the update is half the difference of the two
        outputs. Costs twice the compute; removes the need to learn the two signs separately
        (see docs/RESULTS.md, scaled quadratic).
    """

    layers: tuple[int, ...] = (20, 20)
    preprocess: str = "log_sign"
    k: float = 5.0
    min_log_gradient: float = -30.0
    output_scale: float = 0.1
    forget_bias: float = 1.0
    symmetric: bool = False
    name: ClassVar[str] = "DM"

    def __post_init__(self):
        object.__setattr__(self, "layers", networks.layer_sizes(self.layers, allow_empty=True))
        if self.preprocess not in features.PREPROCESSING:
            raise L2OError(
                f"unknown preprocess {self.preprocess!r}; choose one of: "
                f"{', '.join(features.PREPROCESSING)}"
            )
        if self.min_log_gradient >= 0:
            raise L2OError(f"min_log_gradient must be negative, got {self.min_log_gradient}")

    @property
    def _network(self) -> DeepLSTM:
        return DeepLSTM(self.forget_bias)

    def _features(self, gradients):
        if self.preprocess == "log_sign":
            return features.log_and_sign(gradients, self.k)
        if self.preprocess == "log_rescale":
            return features.log_rescale(gradients, self.min_log_gradient)
        return features.identity_features(gradients)

    def _zero_state(self, num_coordinates: int, dtype=jnp.float32) -> tuple:
        return networks.lstm_zero_state(self.layers, num_coordinates, dtype)

    def init(self, key: jax.Array):
        """Draws meta-parameters: flax variables of the LSTM and its read-out."""
        example = self._features(jnp.zeros((1,)))
        return self._network.init(key, example, self._zero_state(1))

    def transform(self, theta) -> optax.GradientTransformationExtraArgs:
        """The optimizer defined by ``theta`` as an optax transformation.

        ``update(grads, state, params=None, **extra)`` returns updates to be *added* to the
        parameters (``optax.apply_updates``), of the same structure as ``grads``.
        """
        network = self._network
        copies = 2 if self.symmetric else 1

        def init_state(size, dtype, params):
            return DMState(self._zero_state(copies * size, dtype), None)

        def step(flat, state, grads):
            if self.symmetric:
                flat = jnp.concatenate([flat, -flat])
            outputs, hidden = network.apply(theta, self._features(flat), state.hidden)
            if self.symmetric:
                positive, negative = jnp.split(outputs, 2)
                outputs = 0.5 * (positive - negative)
            if self.preprocess == "log_rescale":
                outputs = features.exp_rescale(outputs, self.min_log_gradient)
            return self.output_scale * outputs, DMState(hidden, state.structure)

        return per_coordinate(init_state, step)
