"""The optimizers of Wichrowska et al. 2017, "Learned Optimizers that Scale and Generalize".

``ScaleBasic`` is the paper's coordinatewise LSTM with RMS-scaled inputs and a learned
per-coordinate learning rate and decay. ``ScaleHierarchical`` is its hierarchical optimizer:
a GRU per coordinate, one per tensor and one global, fed momentum at several timescales,
relative log gradient magnitudes and relative log learning rates, with learned decays and a
learned per-coordinate learning rate. The paper's "attention" branch (a gradient evaluated at
a second, offset point) is left out: it needs a second loss evaluation per step, which an optax
transformation cannot request.

Heads that control decays and learning rates start with zero kernels, so an untrained
optimizer keeps its initial decays and learning rates until meta-training moves them.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from l2o.errors import L2OError
from l2o.optimizers import features, networks
from l2o.optimizers.base import per_coordinate

_zeros = nn.initializers.zeros


def _logit(probability: float) -> float:
    return math.log(probability / (1.0 - probability))


def _log_uniform(init_lr: tuple[float, float], size: int, seed: int, dtype) -> jax.Array:
    """``size`` learning rates drawn log-uniformly in ``init_lr``; ``(size,)``."""
    low, high = (math.log(value) for value in init_lr)
    return jnp.exp(jax.random.uniform(jax.random.key(seed), (size,), dtype, low, high))


def _check_init_lr(init_lr) -> tuple[float, float]:
    low, high = (float(value) for value in init_lr)
    if not 0 < low <= high:
        raise L2OError(f"init_lr must be two positive numbers, low <= high, got {list(init_lr)}")
    return low, high


class ScaleBasicNetwork(nn.Module):
    """``(N, 1)`` scaled gradients -> LSTM layers -> update direction, next decay and learning
    rate factor, each ``(N,)``."""

    forget_bias: float
    initial_decay: float
    direction_init_scale: float

    @nn.compact
    def __call__(self, inputs, state):
        x, state = networks.lstm_layers(inputs, state, self.forget_bias)
        direction = networks.head(kernel_init=networks.scaled_normal(self.direction_init_scale))(x)[:, 0]
        decay = jax.nn.sigmoid(networks.head(kernel_init=_zeros, bias=_logit(self.initial_decay))(x)[:, 0])
        lr_factor = 2.0 * jax.nn.sigmoid(networks.head(kernel_init=_zeros)(x)[:, 0])
        return (direction, decay, lr_factor), state


class ScaleBasicState(NamedTuple):
    """Per coordinate ``(N,)``: mean square gradient, its decay, learning rate; LSTM state
    (float32); ``structure``: the parameters' :func:`~l2o.optimizers.base.structure_witness`."""

    mean_square: jax.Array
    decay: jax.Array
    learning_rate: jax.Array
    hidden: tuple
    structure: object


@dataclasses.dataclass(frozen=True)
class ScaleBasic:
    """Coordinatewise LSTM with RMS-scaled inputs and learned learning rates and decays.

    Each step: ``ms <- decay * ms + (1 - decay) g^2``; the LSTM reads ``asinh(g / sqrt(ms +
    eps))`` and emits a direction ``d``, the next ``decay`` and a factor in ``(0, 2)`` that
    multiplies the coordinate's learning rate ``lr``; the update is ``lr * d``.

    Args:
      layers: LSTM hidden sizes.
      init_lr: learning rates start log-uniform in ``[low, high]`` (one draw per coordinate,
        from ``seed``).
      epsilon: added to the mean square before the square root.
      initial_decay: the decay the untrained optimizer uses (its first step uses ``ms = g^2``).
      direction_init_scale: scale of the direction head's initial weights; small, so that an
        untrained optimizer takes small steps.
      forget_bias: added to the LSTM forget gates.
      seed: seed of the learning-rate draw.
    """

    layers: tuple[int, ...] = (20, 20)
    init_lr: tuple[float, float] = (1.0, 1.0)
    epsilon: float = 1e-10
    initial_decay: float = 0.9
    direction_init_scale: float = 0.001
    forget_bias: float = 1.0
    seed: int = 0
    name: ClassVar[str] = "ScaleBasic"

    def __post_init__(self):
        object.__setattr__(self, "layers", networks.layer_sizes(self.layers))
        object.__setattr__(self, "init_lr", _check_init_lr(self.init_lr))
        if not 0.0 < self.initial_decay < 1.0:
            raise L2OError(f"initial_decay must be in (0, 1), got {self.initial_decay}")

    @property
    def _network(self) -> ScaleBasicNetwork:
        return ScaleBasicNetwork(self.forget_bias, self.initial_decay, self.direction_init_scale)

    def init(self, key: jax.Array):
        """Draws meta-parameters: flax variables of the LSTM and its three heads."""
        return self._network.init(key, jnp.zeros((1, 1)), networks.lstm_zero_state(self.layers, 1))

    def transform(self, theta) -> optax.GradientTransformationExtraArgs:
        """The optimizer defined by ``theta``; updates are added to the parameters."""
        network = self._network

        def init_state(size, dtype, params):
            return ScaleBasicState(
                jnp.zeros(size, dtype),
                jnp.zeros(size, dtype),  # decay 0 on the first step: ms starts at g^2
                _log_uniform(self.init_lr, size, self.seed, dtype),
                networks.lstm_zero_state(self.layers, size, dtype),
                None,
            )

        def step(flat, state, grads):
            mean_square = features.ema(state.mean_square, jnp.square(flat), state.decay)
            inputs = features.rms_scaled(flat, mean_square, self.epsilon)[:, None]
            (direction, decay, lr_factor), hidden = network.apply(theta, inputs, state.hidden)
            learning_rate = state.learning_rate * lr_factor
            new_state = ScaleBasicState(mean_square, decay, learning_rate, hidden, state.structure)
            return learning_rate * direction, new_state

        return per_coordinate(init_state, step)


def _segments(grads) -> tuple[np.ndarray, np.ndarray]:
    """Tensor index of every flat coordinate ``(N,)`` and the size of every tensor ``(K,)``."""
    sizes = np.array([leaf.size for leaf in jax.tree.leaves(grads)], np.int32)
    return np.repeat(np.arange(len(sizes)), sizes), sizes


def _segment_mean(values: jax.Array, segments: np.ndarray, sizes: np.ndarray) -> jax.Array:
    """Mean of ``values`` ``(N, ...)`` within each tensor: ``(K, ...)`` (0 for a zero-size one)."""
    totals = jax.ops.segment_sum(values, segments, num_segments=len(sizes))
    return totals / np.maximum(sizes, 1).reshape((-1,) + (1,) * (values.ndim - 1)).astype(values.dtype)


class HierarchicalState(NamedTuple):
    """ScaleHierarchical's state.

    Attributes:
      momentum, second_moment: ``(N, T)`` averages of ``g`` and ``g^2`` at ``T`` timescales.
      log_lr: ``(N,)`` running average of the log learning rate.
      relative_log_lr: ``(N,)`` last log learning rate minus its mean over the tensor.
      param_hidden: ``(N, P)``; tensor_hidden: ``(K, S)`` for ``K`` tensors; global_hidden: ``(1, G)``.
    """

    momentum: jax.Array
    second_moment: jax.Array
    log_lr: jax.Array
    relative_log_lr: jax.Array
    param_hidden: jax.Array
    tensor_hidden: jax.Array
    global_hidden: jax.Array


class HierarchicalTransformState(NamedTuple):
    """The transformation's state: the network's :class:`HierarchicalState` (float32) and the
    parameters' :func:`~l2o.optimizers.base.structure_witness`."""

    network: HierarchicalState
    structure: object


class HierarchicalNetwork(nn.Module):
    """One step of the hierarchical optimizer on flat gradients ``(N,)``; returns the update
    ``(N,)`` and the new :class:`HierarchicalState`."""

    param_units: int
    tensor_units: int
    global_units: int
    timescales: int
    epsilon: float
    momentum_decay: float
    variance_decay: float
    direction_init_scale: float
    max_log_lr_change: float

    @nn.compact
    def __call__(self, gradients, state: HierarchicalState, segments, sizes):
        rows = gradients.shape[0]
        # Decays for this step come from the previous parameter-RNN state (eq. 13).
        beta_g = jax.nn.sigmoid(networks.head(kernel_init=_zeros, bias=_logit(self.momentum_decay))(state.param_hidden))
        beta_v = jax.nn.sigmoid(networks.head(kernel_init=_zeros, bias=_logit(self.variance_decay))(state.param_hidden))
        decays_g = features.timescale_decays(beta_g[:, 0], self.timescales)
        decays_v = features.timescale_decays(beta_v[:, 0], self.timescales)
        momentum = features.ema(state.momentum, gradients[:, None], decays_g)
        second_moment = features.ema(state.second_moment, jnp.square(gradients)[:, None], decays_v)
        scaled_momentum = momentum * jax.lax.rsqrt(second_moment + self.epsilon)
        param_inputs = jnp.concatenate([
            scaled_momentum,
            features.relative_log_magnitude(second_moment, self.epsilon),
            state.relative_log_lr[:, None],
            state.tensor_hidden[segments],
            jnp.broadcast_to(state.global_hidden, (rows, self.global_units)),
        ], axis=-1)
        param_hidden = networks.GRU(self.param_units, name="param_rnn")(param_inputs, state.param_hidden)
        tensor_inputs = jnp.concatenate([
            _segment_mean(param_hidden, segments, sizes),
            jnp.broadcast_to(state.global_hidden, (len(sizes), self.global_units)),
        ], axis=-1)
        tensor_hidden = networks.GRU(self.tensor_units, name="tensor_rnn")(tensor_inputs, state.tensor_hidden)
        if not np.all(sizes) and np.any(sizes):  # zero-size tensors hold nothing: left out of the global mean
            tensor_hidden_global = tensor_hidden[np.flatnonzero(sizes)]
        else:
            tensor_hidden_global = tensor_hidden
        global_hidden = networks.GRU(self.global_units, name="global_rnn")(
            tensor_hidden_global.mean(0, keepdims=True), state.global_hidden
        )
        # Learning rate: a change of the log learning rate around its running average (eq. 7, 8),
        # at most max_log_lr_change per step (unbounded, meta-training diverged: docs/RESULTS.md).
        change = self.max_log_lr_change * jnp.tanh(networks.head(kernel_init=_zeros)(param_hidden)[:, 0])
        log_lr = state.log_lr + change
        keep = jax.nn.sigmoid(self.param("lr_average_logit", _zeros, ()))
        log_lr_average = keep * state.log_lr + (1.0 - keep) * log_lr
        relative_log_lr = log_lr - _segment_mean(log_lr, segments, sizes)[segments]
        # Direction: a read-out of the parameter RNN plus a linear shortcut from the scaled
        # momenta (appendix B.1).
        direction_init = networks.scaled_normal(self.direction_init_scale)
        direction = (networks.head(kernel_init=direction_init)(param_hidden)[:, 0]
                     + nn.Dense(1, use_bias=False, kernel_init=direction_init)(scaled_momentum)[:, 0])
        new_state = HierarchicalState(momentum, second_moment, log_lr_average, relative_log_lr,
                                      param_hidden, tensor_hidden, global_hidden)
        return jnp.exp(log_lr) * direction, new_state


@dataclasses.dataclass(frozen=True)
class ScaleHierarchical:
    """The hierarchical learned optimizer (parameter, tensor and global GRUs).

    Args:
      param_units: hidden units of the per-coordinate GRU.
      tensor_units: hidden units of the per-tensor GRU.
      global_units: hidden units of the global GRU.
      init_lr: learning rates start log-uniform in ``[low, high]`` (one draw per coordinate).
      timescales: number of timescales of the momentum and second-moment averages.
      epsilon: numerical floor of the second moments.
      momentum_decay, variance_decay: the untrained optimizer's base decays (learned later).
      direction_init_scale: scale of the direction heads' initial weights.
      max_log_lr_change: bound on the per-step change of a coordinate's log learning rate.
      seed: seed of the learning-rate draw.
    """

    param_units: int = 10
    tensor_units: int = 5
    global_units: int = 5
    init_lr: tuple[float, float] = (1e-6, 1e-2)
    timescales: int = 5
    epsilon: float = 1e-10
    momentum_decay: float = 0.9
    variance_decay: float = 0.999
    direction_init_scale: float = 0.01
    max_log_lr_change: float = 0.1
    seed: int = 0
    name: ClassVar[str] = "ScaleHierarchical"

    def __post_init__(self):
        object.__setattr__(self, "init_lr", _check_init_lr(self.init_lr))
        for name in ("param_units", "tensor_units", "global_units", "timescales"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise L2OError(f"{name} must be a positive integer, got {value!r}")
        for name in ("momentum_decay", "variance_decay"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise L2OError(f"{name} must be in (0, 1), got {getattr(self, name)}")
        if self.max_log_lr_change <= 0:
            raise L2OError(f"max_log_lr_change must be positive, got {self.max_log_lr_change}")

    @property
    def _network(self) -> HierarchicalNetwork:
        return HierarchicalNetwork(self.param_units, self.tensor_units, self.global_units, self.timescales,
                                   self.epsilon, self.momentum_decay, self.variance_decay,
                                   self.direction_init_scale, self.max_log_lr_change)

    def _zero_state(self, rows: int, tensors: int, dtype) -> HierarchicalState:
        return HierarchicalState(jnp.zeros((rows, self.timescales), dtype), jnp.zeros((rows, self.timescales), dtype),
                                 jnp.zeros((rows,), dtype), jnp.zeros((rows,), dtype),
                                 jnp.zeros((rows, self.param_units), dtype),
                                 jnp.zeros((tensors, self.tensor_units), dtype),
                                 jnp.zeros((1, self.global_units), dtype))

    def init(self, key: jax.Array):
        """Draws meta-parameters: the three GRUs and the heads."""
        example = jnp.zeros((1,))
        return self._network.init(key, example, self._zero_state(1, 1, jnp.float32), *_segments(example))

    def transform(self, theta) -> optax.GradientTransformationExtraArgs:
        """The optimizer defined by ``theta``; updates are added to the parameters."""
        network = self._network

        def init_state(size, dtype, params):
            state = self._zero_state(size, len(_segments(params)[1]), dtype)
            log_lr = jnp.log(_log_uniform(self.init_lr, size, self.seed, dtype))
            return HierarchicalTransformState(state._replace(log_lr=log_lr), None)

        def step(flat, state, grads):
            updates, network_state = network.apply(theta, flat, state.network, *_segments(grads))
            return updates, HierarchicalTransformState(network_state, state.structure)

        return per_coordinate(init_state, step)
