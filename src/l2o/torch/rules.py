"""Per-parameter update rules of the learned architectures in PyTorch.

A rule is built from a loaded l2o optimizer (its hyperparameter dataclass and meta-parameters)
and applied to one parameter tensor at a time: ``init_state(param) -> state`` and
``update(gradient, param, state) -> (update, new state)``, the update to be added to the parameter;
a state is a flat dict of tensors (what ``torch.optim.Optimizer.state`` holds and ``state_dict``
saves), never modified in place. Each rule follows the JAX
transformation of the same architecture operation by operation: the coordinatewise LSTMs (DM,
RNNProp) treat every coordinate alike, so one tensor at a time is the same as the flat vector JAX
uses; AdafacMLP is per tensor in JAX too. State is float32 (float64 for float64 parameters).
"""

from __future__ import annotations

import math

import jax
import numpy as np
import torch

from l2o.optimizers import DM, AdafacMLP, RNNProp
from l2o.optimizers.adafac_mlp import NEWTON_SCHULZ_COEFFICIENTS
from l2o.torch.networks import dense, lstm_layers

State = dict  # str -> torch.Tensor


def theta_to_torch(theta) -> dict:
    """Flax meta-parameters (nested dicts of JAX arrays) as nested dicts of float32 torch tensors,
    the form every rule of :data:`RULES` takes."""
    return jax.tree.map(lambda leaf: torch.from_numpy(np.array(leaf, dtype=np.float32)), theta)


def state_dtype(param: torch.Tensor) -> torch.dtype:
    """float32, or float64 for float64 parameters (:func:`l2o.optimizers.base.state_dtype`)."""
    return torch.promote_types(param.dtype, torch.float32)


class _Theta:
    """Meta-parameters (flax's ``{"params": {"Dense_i": {"kernel", "bias"}}}`` as float32 torch
    tensors) on a given device and in a given dtype, converted once per (device, dtype)."""

    def __init__(self, theta: dict):
        self.cpu = theta["params"]
        self.converted = {}

    def on(self, like: torch.Tensor) -> dict:
        """The layers on ``like``'s device in its state dtype (exact: float32 widens to float64)."""
        key = (like.device, state_dtype(like))
        if key not in self.converted:
            self.converted[key] = {name: {k: v.to(device=key[0], dtype=key[1]) for k, v in layer.items()}
                                   for name, layer in self.cpu.items()}
        return self.converted[key]


def _layers(theta: dict, first: int, count: int) -> list:
    return [theta[f"Dense_{i}"] for i in range(first, first + count)]


def _lstm_state(state: State, layers: tuple[int, ...]) -> list:
    return [(state[f"h{i}"], state[f"c{i}"]) for i in range(len(layers))]


def _lstm_entries(hidden: list) -> State:
    entries = {}
    for i, (h, c) in enumerate(hidden):
        entries[f"h{i}"], entries[f"c{i}"] = h, c
    return entries


def _zero_lstm(rows: int, layers: tuple[int, ...], like: torch.Tensor) -> State:
    dtype = state_dtype(like)
    zeros = {}
    for i, size in enumerate(layers):
        zeros[f"h{i}"] = torch.zeros(rows, size, dtype=dtype, device=like.device)
        zeros[f"c{i}"] = torch.zeros(rows, size, dtype=dtype, device=like.device)
    return zeros


class DMRule:
    """:class:`l2o.optimizers.DM`: a coordinatewise LSTM on the preprocessed gradient."""

    def __init__(self, lopt: DM, theta: dict):
        self.lopt, self.theta = lopt, _Theta(theta)
        self.copies = 2 if lopt.symmetric else 1

    def init_state(self, param: torch.Tensor) -> State:
        return _zero_lstm(self.copies * param.numel(), self.lopt.layers, param)

    def _features(self, gradients: torch.Tensor) -> torch.Tensor:
        """:meth:`l2o.optimizers.DM._features`: ``(N,) -> (N, F)``."""
        lopt = self.lopt
        if lopt.preprocess == "log_sign":
            tiny = torch.finfo(gradients.dtype).tiny
            log_magnitude = torch.clamp(torch.log(gradients.abs() + tiny) / lopt.k, min=-1.0)
            sign = torch.clamp(gradients * math.exp(lopt.k), -1.0, 1.0)
            return torch.stack([log_magnitude, sign], dim=-1)
        if lopt.preprocess == "log_rescale":
            floor = math.exp(lopt.min_log_gradient - 5.0)
            magnitude = (torch.log(gradients.abs() + floor) - lopt.min_log_gradient) / (-lopt.min_log_gradient)
            return (torch.sign(gradients) * magnitude)[:, None]
        return gradients[:, None]

    def update(self, gradient: torch.Tensor, param: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        del param
        lopt, theta = self.lopt, self.theta.on(gradient)
        flat = gradient.reshape(-1).to(state_dtype(gradient))
        if lopt.symmetric:
            flat = torch.cat([flat, -flat])
        layers = len(lopt.layers)
        x, hidden = lstm_layers(self._features(flat), _lstm_state(state, lopt.layers),
                                _layers(theta, 0, layers), lopt.forget_bias)
        outputs = dense(x, theta[f"Dense_{layers}"])[:, 0]
        if lopt.symmetric:
            positive, negative = torch.chunk(outputs, 2)
            outputs = 0.5 * (positive - negative)
        if lopt.preprocess == "log_rescale":
            outputs = torch.sign(outputs) * torch.exp(lopt.min_log_gradient * (1.0 - outputs.abs()))
        return (lopt.output_scale * outputs).reshape(gradient.shape), _lstm_entries(hidden)


class RNNPropRule:
    """:class:`l2o.optimizers.RNNProp`: a coordinatewise LSTM on Adam's normalized moments."""

    def __init__(self, lopt: RNNProp, theta: dict):
        self.lopt, self.theta = lopt, _Theta(theta)

    def init_state(self, param: torch.Tensor) -> State:
        dtype, n = state_dtype(param), param.numel()
        return {"step": torch.zeros((), dtype=torch.float32),
                "momentum": torch.zeros(n, dtype=dtype, device=param.device),
                "second_moment": torch.zeros(n, dtype=dtype, device=param.device),
                **_zero_lstm(n, self.lopt.layers, param)}

    def update(self, gradient: torch.Tensor, param: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        del param
        lopt, theta = self.lopt, self.theta.on(gradient)
        step = state["step"] + 1
        count = step.to(state_dtype(gradient))
        flat = gradient.reshape(-1).to(state_dtype(gradient))
        momentum = lopt.beta_1 * state["momentum"] + (1.0 - lopt.beta_1) * flat
        second_moment = lopt.beta_2 * state["second_moment"] + (1.0 - lopt.beta_2) * torch.square(flat)
        scale = torch.rsqrt(second_moment / (1.0 - lopt.beta_2**count) + lopt.epsilon)
        inputs = torch.stack([momentum / (1.0 - lopt.beta_1**count) * scale, flat * scale], dim=-1)
        layers = len(lopt.layers)
        x = torch.nn.functional.elu(dense(inputs, theta["Dense_0"]))
        x, hidden = lstm_layers(x, _lstm_state(state, lopt.layers), _layers(theta, 1, layers), lopt.forget_bias)
        direction = torch.tanh(dense(x, theta[f"Dense_{layers + 1}"])[:, 0])
        new_state = {"step": step, "momentum": momentum, "second_moment": second_moment, **_lstm_entries(hidden)}
        return (-lopt.alpha * direction).reshape(gradient.shape), new_state


def _as_matrix(tensor: torch.Tensor) -> torch.Tensor:
    """Torch's weight layout ``(out, in, ...)`` as the ``(fan_out, fan_in)`` matrix ``(out, prod(in,
    ...))``: JAX's matrix of the same layer (:func:`l2o.optimizers.adafac_mlp._as_matrix`, ``(...,
    in, out) -> (prod(..., in), out)``) transposed, up to an order of its fan-in, which Adafactor's
    factored statistics and orthogonalization carry through unchanged. Vectors ``(n,) -> (n, 1)``,
    scalars ``(1, 1)``, as in JAX."""
    if tensor.dim() == 0:
        return tensor.reshape(1, 1)
    if tensor.dim() == 1:
        return tensor[:, None]
    return tensor.reshape(tensor.shape[0], math.prod(tensor.shape[1:]))  # not -1: zero-size tensors


def _orthogonalized(matrix: torch.Tensor, epsilon: float = 1e-7) -> torch.Tensor:
    """:func:`l2o.optimizers.adafac_mlp.orthogonalized`: quintic Newton-Schulz steps on the smaller Gram matrix."""
    tall = matrix.shape[0] > matrix.shape[1]
    x = matrix.T if tall else matrix
    x = x / (torch.sqrt(torch.square(x).sum()) + epsilon)
    a, b, c = NEWTON_SCHULZ_COEFFICIENTS
    for _ in range(5):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if tall else x


def _at_unit_rms(x: torch.Tensor, epsilon: float) -> torch.Tensor:
    """:meth:`l2o.optimizers.AdafacMLP._at_unit_rms`: ``x`` over its root mean square."""
    return x * torch.rsqrt(torch.square(x).mean() + epsilon**2)


def _nesterov(momentum: torch.Tensor, gradient: torch.Tensor, decay: float, step: torch.Tensor) -> torch.Tensor:
    """:func:`l2o.optimizers.adafac_mlp.nesterov`: the bias-corrected Nesterov look-ahead of an average."""
    return decay * momentum / (1.0 - decay ** (step + 1)) + (1.0 - decay) * gradient / (1.0 - decay**step)


class AdafacMLPRule:
    """:class:`l2o.optimizers.AdafacMLP`: a per-parameter MLP over momenta and Adafactor features."""

    def __init__(self, lopt: AdafacMLP, theta: dict):
        self.lopt, self.theta = lopt, _Theta(theta)

    def init_state(self, param: torch.Tensor) -> State:
        dtype, device = state_dtype(param), param.device
        rows, columns = _as_matrix(param).shape
        decays = len(self.lopt.adafactor_decays)
        return {"step": torch.zeros((), dtype=torch.float32),
                "momentum": torch.zeros((len(self.lopt.momentum_decays), *param.shape), dtype=dtype, device=device),
                "second_moment": torch.zeros(param.shape, dtype=dtype, device=device),
                "rows": torch.zeros(decays, rows, dtype=dtype, device=device),
                "columns": torch.zeros(decays, columns, dtype=dtype, device=device)}

    def update(self, gradient: torch.Tensor, param: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        lopt = self.lopt
        dtype, device = state_dtype(gradient), gradient.device
        step = state["step"] + 1
        steps = torch.tanh(step.to(device) / torch.tensor(lopt.step_timescales, device=device))
        gradient, value = gradient.to(dtype), param.to(dtype)
        n = gradient.numel()
        momentum_decays = torch.tensor(lopt.momentum_decays, dtype=dtype, device=device)
        momentum_decays = momentum_decays.reshape((-1,) + (1,) * gradient.dim())
        momentum = momentum_decays * state["momentum"] + (1.0 - momentum_decays) * gradient[None]
        second_moment = lopt.second_moment_decay * state["second_moment"] + (
            1.0 - lopt.second_moment_decay) * torch.square(gradient)
        square = torch.square(_as_matrix(gradient))
        adafactor_decays = torch.tensor(lopt.adafactor_decays, dtype=dtype, device=device)[:, None]
        rows = adafactor_decays * state["rows"] + (1.0 - adafactor_decays) * square.mean(-1)
        columns = adafactor_decays * state["columns"] + (1.0 - adafactor_decays) * square.mean(-2)
        new_state = {"step": step, "momentum": momentum, "second_moment": second_moment, "rows": rows,
                     "columns": columns}

        scale = rows.mean(-1, keepdim=True) + lopt.epsilon
        factored = (rows[:, :, None] * columns[:, None, :] / scale[..., None]).reshape(len(lopt.adafactor_decays), n)
        rsqrt_second = torch.rsqrt(second_moment.reshape(n) + lopt.epsilon)
        rsqrt_factored = torch.rsqrt(factored + lopt.epsilon)
        momenta = momentum.reshape(len(lopt.momentum_decays), n)
        flat = gradient.reshape(n)
        inputs = torch.cat([value.reshape(1, n), flat[None], momenta, momenta * rsqrt_second,
                            rsqrt_second[None], flat * rsqrt_factored, rsqrt_factored])  # (F, n)
        direction, magnitude = self._apply(self.theta.on(gradient), inputs, steps)
        if lopt.muon_prior:
            direction, magnitude = self._muon(direction, magnitude, momenta, flat, second_moment.reshape(n),
                                              rows[lopt.adafactor_decays.index(0.9)], value, step)
        else:
            if lopt.adam_prior:
                direction = direction - momenta[lopt.momentum_decays.index(0.9)] * rsqrt_second
            if lopt.normalize_output:
                direction = _at_unit_rms(direction, lopt.epsilon)
                magnitude = magnitude.mean()
            if lopt.orthogonalize and value.dim() >= 2:
                matrix = _orthogonalized(direction.reshape(_as_matrix(value).shape)).reshape(n)
                rms = lambda x: torch.sqrt(torch.square(x).mean() + lopt.epsilon**2)
                direction = matrix * (rms(direction) / rms(matrix))
        update = self._step_size(value) * direction * torch.exp(lopt.exp_mult * magnitude)
        return update.reshape(gradient.shape), new_state

    def _muon(self, direction, magnitude, momenta, gradient, second_moment, recent_square, value, step):
        """:meth:`l2o.optimizers.AdafacMLP._muon`: the network's ``(n,)`` direction and log-magnitude
        added to Muon's (Nesterov Adam's for vectors and scalars) at step ``step``."""
        lopt, decays = self.lopt, self.lopt.momentum_decays
        if value.dim() < 2:
            m = _nesterov(momenta[decays.index(0.9)], gradient, 0.9, step)
            v = second_moment / (1.0 - lopt.second_moment_decay**step)
            return direction - m / (torch.sqrt(v) + lopt.epsilon), magnitude
        m = _nesterov(momenta[decays.index(0.95)], gradient, 0.95, step)
        m = _at_unit_rms(m, lopt.epsilon)
        fan_out, fan_in = _as_matrix(value).shape  # JAX's (fan_in, fan_out) transposed
        width = math.sqrt(max(1.0, fan_out / max(fan_in, 1)))
        matrix = _orthogonalized((direction - m).reshape(fan_out, fan_in)) * width
        if lopt.muon_anneal > 0:  # torch's rows are JAX's columns: the mean over the tensor is the same
            mean_m2 = torch.square(momenta[decays.index(0.95)] / (1.0 - 0.95**step)).mean()
            mean_square = (recent_square / (1.0 - 0.9**step)).mean()
            share = torch.sqrt(mean_m2 / (mean_square + lopt.epsilon**2)) / lopt.muon_anneal
            matrix = matrix * torch.clamp(share, max=1.0)
        return matrix.reshape(direction.shape), magnitude.mean()

    def _step_size(self, value: torch.Tensor):
        """:meth:`l2o.optimizers.AdafacMLP._step_size`: ``step_mult``, or for tensors of two or more
        axes with ``relative_step_mult``, that fraction of their root mean square."""
        lopt = self.lopt
        if lopt.relative_step_mult == 0.0 or value.dim() < 2:
            return lopt.step_mult
        return lopt.relative_step_mult * torch.sqrt(torch.square(value).mean()) + lopt.step_mult / 100.0

    def _apply(self, theta: dict, inputs: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
        """:meth:`l2o.optimizers.AdafacMLP._apply`: features ``(F, n)`` normalized by their root mean
        square over the tensor, with the step features ``(S,)``, through the MLP to ``(2, n)``."""
        lopt = self.lopt
        layers = [theta[f"Dense_{i}"] for i in range(lopt.hidden_layers + 1)]
        count = inputs.shape[0]
        kernel = layers[0]["kernel"]
        normalizer = torch.rsqrt(torch.square(inputs).mean(-1) + lopt.epsilon)  # (F,)
        constant = steps.to(kernel.dtype) @ kernel[count:] + layers[0]["bias"]  # the same for every coordinate
        x = (kernel[:count] * normalizer[:, None]).T @ inputs + constant[:, None]
        for layer in layers[1:]:
            x = layer["kernel"].T @ torch.relu(x) + layer["bias"][:, None]
        return x


RULES = {"DM": DMRule, "RNNProp": RNNPropRule, "AdafacMLP": AdafacMLPRule}
