"""AdafacMLP: a small per-parameter MLP over accumulator features (Metz et al. 2022, the
"small_fc_lopt"/``AdafacMLP`` family of learned_optimization).

Every coordinate of every tensor is fed, after per-tensor normalization, its parameter value,
gradient, momenta at several decays, RMS-normalized momenta, Adafactor-normalized gradients at
several decays and the factored second moments themselves, plus the step count on several
timescales. The MLP emits a direction ``d`` and a log-magnitude ``s``; the update is
``step_mult * d * exp(exp_mult * s)``, and both multipliers are small so that an untrained
optimizer takes small steps.

Two options, off by default, make the step size transfer across tensors of different widths and
scales (Celo2's normalized update, Moudgil et al. 2026, and LAMB's trust ratio, You et al. 2020):
``normalize_output`` divides ``d`` by its root mean square over the tensor and averages ``s`` over
the tensor, so that every tensor's step has root mean square ``step_mult * exp(exp_mult * mean(s))``;
``relative_step_mult`` > 0 replaces ``step_mult``, for tensors of two or more axes, by
``relative_step_mult * rms(parameters) + step_mult / 100``: a step relative to the tensor's own
scale, so that rescaling a weight tensor (and its gradient inversely) rescales its step alike.
A third, ``adam_prior``, adds Adam's direction ``-m / sqrt(v)`` to ``d`` and starts the network's
output layer at zero, so that the untrained optimizer is Adam (per-tensor normalized with
``normalize_output``) and meta-training learns a correction to it rather than an optimizer from
nothing. A fourth, ``orthogonalize`` (Celo2's update for matrices, after Muon, Jordan et al.
2024), replaces the direction of every tensor of two or more axes, seen as a matrix, by its
orthogonalization (:func:`orthogonalized`) rescaled to the direction's root mean square: the
step keeps its size and loses the few directions that dominate it. A fifth, ``muon_prior``, makes
the untrained optimizer Muon (Jordan et al. 2024) as optax's ``contrib.muon`` defines it, at
learning rate ``step_mult``: tensors of two or more axes step along the orthogonalized Nesterov
momentum (decay 0.95, bias-corrected; the network's direction is added to it at unit root mean
square before orthogonalizing) times ``sqrt(max(1, fan_out / fan_in))``; vectors and scalars step
along Nesterov Adam's ``m / (sqrt(v) + eps)`` (decays 0.9 and ``second_moment_decay``) plus the
network's direction. The network's output layer starts at zero, so meta-training learns a
correction to Muon. Where optax's Muon leaves tensors of three or more axes (convolution kernels)
to Adam, this orthogonalizes them as ``(prod(leading axes), last axis)`` matrices, like
``orthogonalize``. Muon's step keeps its size when the gradients turn to noise, where Adam's
shrinks (``|m| / sqrt(v)`` falls); ``muon_anneal`` > 0 multiplies each matrix's step by
``min(1, rho / muon_anneal)``, ``rho = sqrt(mean(m^2) / mean(g^2))`` over the tensor, the mean
square gradient over a window like the momentum's (decay 0.9; about 1 for consistent gradients,
``sqrt(0.05 / 1.95) = 0.16`` for pure noise at momentum 0.95).

Adafactor statistics treat a tensor as a matrix ``(fan_in, fan_out)`` (all axes but the last,
by the last); vectors are ``(n, 1)`` matrices, for which the factored estimate is exact.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import optax

from l2o.errors import L2OError
from l2o.optimizers import features, networks
from l2o.optimizers.base import state_dtype

# Muon's quintic Newton-Schulz coefficients (Jordan et al. 2024).
NEWTON_SCHULZ_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def orthogonalized(matrix: jax.Array, iterations: int = 5, epsilon: float = 1e-7) -> jax.Array:
    """``(R, C) -> (R, C)``: the matrix with its singular vectors kept and its singular values
    moved towards 1, by ``iterations`` quintic Newton-Schulz steps on the matrix over its
    Frobenius norm, computed on the smaller side's Gram matrix. With 5 steps, singular values
    above about 1% of the Frobenius norm end within about [0.68, 1.13]; smaller ones grow by a
    factor of up to 3.4445 per step."""
    tall = matrix.shape[0] > matrix.shape[1]
    x = matrix.T if tall else matrix
    x = x / (jnp.sqrt(jnp.sum(jnp.square(x))) + epsilon)
    a, b, c = NEWTON_SCHULZ_COEFFICIENTS
    for _ in range(iterations):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if tall else x


def nesterov(momentum: jax.Array, gradient: jax.Array, decay: float, count) -> jax.Array:
    """Nesterov's look-ahead of an exponential average ``momentum`` (decay ``decay``, started at
    zero, after ``count >= 1`` updates, the latest with ``gradient``), bias-corrected as optax's
    Adam and Muon do with ``nesterov=True``: ``decay * m / (1 - decay**(t+1)) + (1 - decay) * g /
    (1 - decay**t)``. Any shape, elementwise."""
    return (decay * features.debias(momentum, decay, count + 1)
            + (1.0 - decay) * features.debias(gradient, decay, count))


def _as_matrix(leaf: jax.Array) -> jax.Array:
    """``(..., C) -> (prod(...), C)``; vectors ``(n,) -> (n, 1)``; scalars ``(1, 1)``."""
    if leaf.ndim == 0:
        return leaf.reshape(1, 1)
    if leaf.ndim == 1:
        return leaf[:, None]
    return leaf.reshape(math.prod(leaf.shape[:-1]), leaf.shape[-1])  # not -1: zero-size tensors


class AdafacState(NamedTuple):
    """Step count (int32 scalar) and per-tensor float32 accumulators, each a tree like the parameters:
    ``momentum`` ``(M, *shape)``, ``second_moment`` ``(*shape)``, ``rows`` ``(A, R)`` and
    ``columns`` ``(A, C)`` for the tensor seen as an ``(R, C)`` matrix."""

    count: jax.Array
    momentum: object
    second_moment: object
    rows: object
    columns: object


@dataclasses.dataclass(frozen=True)
class AdafacMLP:
    """Per-parameter MLP learned optimizer.

    Args:
      hidden_size: width of each hidden layer.
      hidden_layers: number of hidden layers (ReLU).
      momentum_decays: decays of the gradient averages.
      second_moment_decay: decay of the squared-gradient average used to normalize momenta.
      adafactor_decays: decays of the factored second moments.
      step_timescales: the step count enters as ``tanh(count / tau)`` for each ``tau``.
      exp_mult, step_mult: output scales, ``update = step_mult * d * exp(exp_mult * s)``.
      normalize_output: unit root mean square direction and one magnitude per tensor.
      relative_step_mult: when > 0, the step of a tensor with two or more axes is this fraction of
        the tensor's parameter root mean square (plus ``step_mult / 100``, so that a tensor at zero
        still moves) instead of ``step_mult``.
      adam_prior: the direction is the network's output minus ``m / sqrt(v)`` (the momentum of
        decay 0.9, which ``momentum_decays`` must hold, over the second moment), and the network's
        last layer starts at zero.
      orthogonalize: the direction of a tensor of two or more axes, as an ``(R, C)`` matrix, is
        orthogonalized and rescaled to its root mean square before the step size multiplies it.
      muon_prior: the untrained optimizer is Muon at learning rate ``step_mult`` (module docstring);
        ``momentum_decays`` must hold 0.9 and 0.95, and the four options above must be off, since
        it defines the output itself.
      muon_anneal: with ``muon_prior``, when > 0, a matrix's step is multiplied by
        ``min(1, rho / muon_anneal)``, ``rho`` the tensor's share of signal in its gradients
        (:meth:`_signal_share`): Muon's step anneals as Adam's does when the gradients turn to noise.
      epsilon: numerical floor under square roots.
    """

    hidden_size: int = 4
    hidden_layers: int = 2
    momentum_decays: tuple[float, ...] = (0.1, 0.5, 0.9, 0.99, 0.999)
    second_moment_decay: float = 0.999
    adafactor_decays: tuple[float, ...] = (0.9, 0.99, 0.999)
    step_timescales: tuple[float, ...] = (1, 3, 10, 30, 100, 300, 1000, 3000, 10000, 30000, 100000)
    exp_mult: float = 0.001
    step_mult: float = 0.001
    normalize_output: bool = False
    relative_step_mult: float = 0.0
    adam_prior: bool = False
    orthogonalize: bool = False
    muon_prior: bool = False
    muon_anneal: float = 0.0
    epsilon: float = 1e-8
    name: ClassVar[str] = "AdafacMLP"

    def __post_init__(self):
        for name in ("momentum_decays", "adafactor_decays", "step_timescales"):
            object.__setattr__(self, name, tuple(float(value) for value in getattr(self, name)))
        decays = self.momentum_decays + self.adafactor_decays + (self.second_moment_decay,)
        if not self.momentum_decays or not self.adafactor_decays or any(not 0.0 <= d < 1.0 for d in decays):
            raise L2OError(f"decays must be non-empty lists of numbers in [0, 1), got {list(decays)}")
        if any(tau <= 0 for tau in self.step_timescales):
            raise L2OError(f"step_timescales must be positive, got {list(self.step_timescales)}")
        if self.hidden_size < 1 or self.hidden_layers < 0:
            raise L2OError("hidden_size must be >= 1 and hidden_layers >= 0")
        if self.relative_step_mult < 0:
            raise L2OError(f"relative_step_mult must be >= 0 (0 turns it off), got {self.relative_step_mult}")
        if self.adam_prior and 0.9 not in self.momentum_decays:
            raise L2OError(f"adam_prior needs 0.9 among momentum_decays, got {list(self.momentum_decays)}")
        if self.muon_anneal < 0 or (self.muon_anneal > 0 and not self.muon_prior):
            raise L2OError(f"muon_anneal must be >= 0 (0 turns it off) and needs muon_prior, got {self.muon_anneal}")
        if self.muon_anneal > 0 and 0.9 not in self.adafactor_decays:
            raise L2OError(f"muon_anneal needs 0.9 among adafactor_decays, got {list(self.adafactor_decays)}")
        if self.muon_prior:
            if not {0.9, 0.95} <= set(self.momentum_decays):
                raise L2OError(f"muon_prior needs 0.9 and 0.95 among momentum_decays, got {list(self.momentum_decays)}")
            clashes = [name for name in ("normalize_output", "adam_prior", "orthogonalize", "relative_step_mult")
                       if getattr(self, name)]
            if clashes:
                raise L2OError(f"muon_prior defines the update itself: turn off {', '.join(clashes)}")

    @property
    def num_features(self) -> int:
        """Inputs per coordinate: value, gradient, M momenta, M normalized momenta, rsqrt of the
        second moment, A Adafactor-normalized gradients, A Adafactor rsqrt factors, the steps."""
        return 3 + 2 * len(self.momentum_decays) + 2 * len(self.adafactor_decays) + len(self.step_timescales)

    @property
    def _network(self) -> networks.MLP:
        return networks.MLP((self.hidden_size,) * self.hidden_layers, 2)

    def init(self, key: jax.Array):
        """Draws meta-parameters: flax variables of the MLP (last layer zero with a prior)."""
        theta = self._network.init(key, jnp.zeros((1, self.num_features)))
        if not (self.adam_prior or self.muon_prior):
            return theta
        last = f"Dense_{self.hidden_layers}"
        zeros = jax.tree.map(jnp.zeros_like, theta["params"][last])
        return {**theta, "params": {**theta["params"], last: zeros}}

    def _features(self, value, gradient, momentum, second_moment, rows, columns) -> list:
        """Per-coordinate inputs of one tensor, not yet normalized: a list of
        ``num_features - len(step_timescales)`` arrays of shape ``(n,)``."""
        n = gradient.size
        factored = features.adafactor_estimate(rows, columns, self.epsilon).reshape(len(self.adafactor_decays), n)
        rsqrt_second = jax.lax.rsqrt(second_moment.reshape(n) + self.epsilon)
        rsqrt_factored = jax.lax.rsqrt(factored + self.epsilon)
        momenta = list(momentum.reshape(len(self.momentum_decays), n))
        gradient = gradient.reshape(n)
        return ([value.reshape(n), gradient] + momenta + [m * rsqrt_second for m in momenta] + [rsqrt_second]
                + [gradient * r for r in rsqrt_factored] + list(rsqrt_factored))

    def _apply(self, theta, inputs: list, steps):
        """The MLP on ``[second_moment_normalize(stack(inputs, -1)), steps]`` for every coordinate,
        computed feature-major: ``F`` inputs ``(n,)`` and ``(S,)`` step features to ``(2, n)``.

        The per-tensor normalization is folded into the first kernel and the step features, the
        same for every coordinate, into its bias; the first layer is a sum of ``F`` rank-one terms
        that XLA fuses into one pass over the accumulators, so the ``(n, F + S)`` input matrix of
        :class:`networks.MLP` is never built. The ``F`` normalizing mean squares come from one
        variadic reduction (one more pass; separate reductions took ``F`` passes).
        """
        layers = [theta["params"][f"Dense_{i}"] for i in range(self.hidden_layers + 1)]
        count = len(inputs)
        kernel, bias = layers[0]["kernel"], layers[0]["bias"]
        x = (steps @ kernel[count:] + bias)[:, None]
        for row, feature, mean_square in zip(kernel[:count], inputs, features.mean_squares(inputs)):
            x = x + (row * jax.lax.rsqrt(mean_square + self.epsilon))[:, None] * feature[None, :]
        for layer in layers[1:]:  # tiny kernels: a sum of rank-one terms fuses, a matrix product does not
            hidden, x = jax.nn.relu(x), layer["bias"][:, None]
            for row, unit in zip(layer["kernel"], hidden):
                x = x + row[:, None] * unit[None, :]
        return x

    def _at_unit_rms(self, x):
        """``x`` (any shape) divided by its root mean square (floored at ``epsilon``)."""
        return x * jax.lax.rsqrt(jnp.mean(jnp.square(x)) + self.epsilon**2)

    def _output(self, direction, magnitude):
        """``(n,)`` direction and log-magnitude as the update uses them: with ``normalize_output``,
        the direction at unit root mean square and the tensor's mean log-magnitude."""
        if not self.normalize_output:
            return direction, magnitude
        return self._at_unit_rms(direction), jnp.mean(magnitude)

    def _orthogonal(self, direction, value):
        """With ``orthogonalize``, a tensor of two or more axes: its direction ``(n,)`` orthogonalized
        as the tensor's ``(R, C)`` matrix, at the direction's root mean square."""
        if not self.orthogonalize or value.ndim < 2:
            return direction
        matrix = orthogonalized(direction.reshape(_as_matrix(value).shape)).reshape(direction.shape)
        rms = lambda x: jnp.sqrt(jnp.mean(jnp.square(x)) + self.epsilon**2)
        return matrix * (rms(direction) / rms(matrix))

    def _muon(self, direction, magnitude, momentum, gradient, second_moment, recent_square, value, count):
        """With ``muon_prior``: the network's ``(n,)`` direction and log-magnitude added to Muon's
        direction for a tensor ``value`` (``momentum`` ``(M, n)``, ``gradient`` and
        ``second_moment`` ``(n,)``, ``recent_square`` Adafactor's ``(R,)`` row factor at decay 0.9,
        ``count`` the step number, float32 scalar >= 1)."""
        decays = self.momentum_decays
        if value.ndim < 2:  # Nesterov Adam, per coordinate
            m = nesterov(momentum[decays.index(0.9)], gradient, 0.9, count)
            v = features.debias(second_moment, self.second_moment_decay, count)
            return direction - m / (jnp.sqrt(v) + self.epsilon), magnitude
        m = nesterov(momentum[decays.index(0.95)], gradient, 0.95, count)
        m = self._at_unit_rms(m)
        rows, columns = _as_matrix(value).shape
        matrix = orthogonalized((direction - m).reshape(rows, columns)) * math.sqrt(max(1.0, columns / max(rows, 1)))
        if self.muon_anneal > 0:
            matrix = matrix * self._signal_share(momentum[decays.index(0.95)], recent_square, count)
        return matrix.reshape(direction.shape), jnp.mean(magnitude)

    def _signal_share(self, momentum, recent_square, count):
        """With ``muon_anneal``: ``min(1, rho / muon_anneal)`` for a tensor whose momentum (decay
        0.95) is ``(n,)`` and whose recent mean square gradient is ``recent_square`` (Adafactor's row
        factor at decay 0.9, ``(R,)``: its mean is the tensor's), both debiased, ``rho = sqrt(mean(m^2)
        / mean(g^2))``: near 1 while the gradients agree from step to step (growing or shrinking),
        ``sqrt(0.05 / 1.95) = 0.16`` when they are noise. The two averages span similar windows, so
        that a gradient shrinking as training converges is not mistaken for noise."""
        m = features.debias(momentum, 0.95, count)
        square = jnp.mean(features.debias(recent_square, 0.9, count))
        rho = jnp.sqrt(jnp.mean(jnp.square(m)) / (square + self.epsilon**2))
        return jnp.minimum(1.0, rho / self.muon_anneal)

    def _step_size(self, value):
        """The update's scale for a tensor with parameters ``value``: a scalar."""
        if self.relative_step_mult == 0.0 or value.ndim < 2:
            return self.step_mult
        return self.relative_step_mult * jnp.sqrt(jnp.mean(jnp.square(value))) + self.step_mult / 100.0

    def transform(self, theta) -> optax.GradientTransformationExtraArgs:
        """The optimizer defined by ``theta``; updates are added to the parameters.

        ``update`` needs ``params`` (the parameter values are inputs of the network).
        """
        momentum_decays = jnp.asarray(self.momentum_decays)
        adafactor_decays = jnp.asarray(self.adafactor_decays)

        def init_fn(params):
            def factors(leaf, axis):
                matrix = _as_matrix(leaf)
                return jnp.zeros((len(self.adafactor_decays), matrix.shape[axis]), state_dtype(leaf))

            return AdafacState(
                jnp.zeros((), jnp.int32),
                jax.tree.map(lambda p: jnp.zeros((len(self.momentum_decays),) + p.shape, state_dtype(p)), params),
                jax.tree.map(lambda p: jnp.zeros(p.shape, state_dtype(p)), params),
                jax.tree.map(lambda p: factors(p, 0), params),
                jax.tree.map(lambda p: factors(p, 1), params),
            )

        def update_fn(grads, state, params=None, **extra):
            del extra
            if params is None:
                raise ValueError("AdafacMLP.update needs params: call update(grads, state, params)")
            count = state.count + 1
            step_number = count.astype(jnp.float32)
            steps = features.step_features(step_number, self.step_timescales)

            def one_tensor(gradient, value, momentum, second_moment, rows, columns):
                dtype = gradient.dtype  # accumulators and the network run in float32 (or float64)
                gradient, value = gradient.astype(state_dtype(gradient)), value.astype(state_dtype(gradient))
                shape = (-1,) + (1,) * gradient.ndim
                momentum = features.ema(momentum, gradient[None], momentum_decays.reshape(shape))
                second_moment = features.ema(second_moment, jnp.square(gradient), self.second_moment_decay)
                rows, columns = features.adafactor_accumulate(rows, columns, _as_matrix(gradient), adafactor_decays)
                inputs = self._features(value, gradient, momentum, second_moment, rows, columns)
                direction, magnitude = self._apply(theta, inputs, steps)
                if self.muon_prior:
                    momenta = momentum.reshape(len(self.momentum_decays), gradient.size)
                    recent_square = rows[self.adafactor_decays.index(0.9)]
                    direction, magnitude = self._muon(direction, magnitude, momenta, inputs[1],
                                                      second_moment.reshape(-1), recent_square, value, step_number)
                else:
                    if self.adam_prior:  # inputs[2 + M + i] is the i-th momentum over sqrt(second moment)
                        direction = direction - inputs[2 + len(self.momentum_decays) + self.momentum_decays.index(0.9)]
                    direction, magnitude = self._output(direction, magnitude)
                    direction = self._orthogonal(direction, value)
                update = self._step_size(value) * direction * jnp.exp(self.exp_mult * magnitude)
                return update.reshape(gradient.shape).astype(dtype), momentum, second_moment, rows, columns

            results = jax.tree.map(one_tensor, grads, params, state.momentum, state.second_moment,
                                   state.rows, state.columns)
            treedef = jax.tree.structure(grads)
            updates, momentum, second_moment, rows, columns = (
                jax.tree.unflatten(treedef, [leaf[i] for leaf in treedef.flatten_up_to(results)]) for i in range(5)
            )
            return updates, AdafacState(count, momentum, second_moment, rows, columns)

        return optax.GradientTransformationExtraArgs(init_fn, update_fn)
