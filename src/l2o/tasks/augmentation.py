"""Task augmentations: the same problem, seen by the optimizer through other parameters.

A reparameterization draws, per problem instance, a positive scale ``c`` shaped like the
parameters; the augmented task's parameters are ``x = p / c`` and its objective is
``f(c * x)``, started from ``p0 / c``. The function of the model is unchanged at corresponding
points, but the gradients become ``c * grad f`` and a step of the same size moves the model
differently, so an optimizer meta-trained on augmented tasks has to be invariant to how a model
is parameterized (Lv et al. 2017's random scaling; VeLO's and Celo's reparameterization at the
global, per-tensor and per-parameter level, as in learned_optimization's
``ReparamWeightsFamily``).
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp

from l2o.draws import draw
from l2o.errors import L2OError
from l2o.tasks.base import PyTree, Task

# Reparameterization levels: one factor for all parameters, one per tensor, one per scalar, none.
LEVELS = ("global", "tensor", "parameter", "none")


def rescaled(task: Task, name: str, draw_scales: Callable[[jax.Array, PyTree], PyTree]) -> Task:
    """``task`` reparameterized by the scales ``draw_scales(key, parameter shapes)`` draws per
    instance (a pytree shaped like the parameters). Instances are ``(inst, scales)``."""

    def over(data) -> Task:
        """The rescaled task over the wrapped task's ``data``."""
        inner = task.with_data(data)

        def sample(key):
            key_inst, key_scales = jax.random.split(key)
            inst = inner.sample(key_inst)
            return inst, draw_scales(key_scales, jax.eval_shape(inner.init, key_inst, inst))

        def scaled(params, scales):
            return jax.tree.map(lambda p, c: p * c, params, scales)

        def init(key, scaled_inst):
            inst, scales = scaled_inst
            return jax.tree.map(lambda p, c: p / c, inner.init(key, inst), scales)

        def loss(params, scaled_inst, key):
            inst, scales = scaled_inst
            return inner.loss(scaled(params, scales), inst, key)

        def test_metrics(params, scaled_inst):
            inst, scales = scaled_inst
            return inner.test_metrics(scaled(params, scales), inst)

        return Task(name, sample, init, loss, test_metrics if task.test_metrics is not None else None,
                    task.steps_per_epoch, data, over if task.bind is not None else None)

    return over(task.data)


def randomly_scaled(task: Task, log_range: float) -> Task:
    """``task`` with RNNProp's random scaling (Lv et al. 2017): a per-coordinate scale
    ``c = exp(u)``, ``u ~ U[-log_range, log_range]`` (:func:`rescaled`)."""

    def draw_scales(key, shapes):
        leaves, treedef = jax.tree.flatten(shapes)
        keys = jax.random.split(key, len(leaves))
        logs = [draw(jax.random.uniform, k, leaf.shape, leaf.dtype, -log_range, log_range)
                for k, leaf in zip(keys, leaves)]
        return jax.tree.unflatten(treedef, [jnp.exp(u) for u in logs])

    return rescaled(task, f"{task.name}-randomly-scaled", draw_scales)


def reparameterized(task: Task, scale_range: Sequence[float] = (1e-3, 1e3), levels: Sequence[str] = LEVELS) -> Task:
    """``task`` with VeLO's reparameterization augmentation (:func:`rescaled`): each instance
    draws one of ``levels`` uniformly, then its scales log-uniformly in ``scale_range``: one
    factor for all parameters (``global``), one per tensor (``tensor``), one per scalar
    (``parameter``), or none (``none``, the task as it is).

    All levels have the same shapes, so a population mixing them is one compiled program.
    """
    low, high = (float(value) for value in scale_range)
    if not 0 < low <= high:
        raise L2OError(f"scale_range must be two numbers 0 < low <= high, got {list(scale_range)}")
    unknown = sorted(set(levels) - set(LEVELS))
    if unknown or not levels:
        raise L2OError(f"unknown reparameterization level(s) {unknown or '(none given)'}; "
                       f"choose from {', '.join(LEVELS)}")
    chosen = [LEVELS.index(level) for level in levels]
    log_low, log_high = jnp.log(low), jnp.log(high)

    def draw_scales(key, shapes):
        key_level, key_global, key_leaves = jax.random.split(key, 3)
        level = jnp.asarray(chosen)[jax.random.randint(key_level, (), 0, len(chosen))]
        global_log = jax.random.uniform(key_global, (), minval=log_low, maxval=log_high)
        leaves, treedef = jax.tree.flatten(shapes)
        scales = []
        for key_leaf, leaf in zip(jax.random.split(key_leaves, len(leaves)), leaves):
            key_tensor, key_parameter = jax.random.split(key_leaf)
            tensor_log = jax.random.uniform(key_tensor, (), minval=log_low, maxval=log_high)
            parameter_log = draw(jax.random.uniform, key_parameter, leaf.shape, jnp.float32, log_low, log_high)
            logs = jnp.stack([jnp.broadcast_to(global_log, leaf.shape), jnp.broadcast_to(tensor_log, leaf.shape),
                              parameter_log, jnp.zeros(leaf.shape)])
            scales.append(jnp.exp(logs[level]).astype(leaf.dtype))
        return jax.tree.unflatten(treedef, scales)

    return rescaled(task, f"{task.name}-reparameterized", draw_scales)
