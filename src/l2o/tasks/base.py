"""The task interface: a family of optimization problems that can be vmapped.

A task is a *family*: ``sample(key)`` draws one problem instance (a pytree of constants),
``init(key, inst)`` draws the optimizee's starting parameters, ``loss(params, inst, key)`` is the
training objective (a minibatch drawn from ``key`` for stochastic tasks), and the optional
``test_metrics(params, inst)`` measures final parameters on held-out data (classifiers' test
split). All are pure functions of their arguments, so a population of instances is simply
``jax.vmap`` over them.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from l2o.errors import L2OError

PyTree = Any


def positive_int(name: str, value) -> int:
    """``value`` as an int, or an :class:`L2OError` naming the option ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value or value < 1:
        raise L2OError(f"{name} must be a positive integer, got {value!r}; pass e.g. {name}=10")
    return int(value)


class Task(NamedTuple):
    """A vmappable family of problems.

    Attributes:
      name: registry name, e.g. ``"quadratic"``.
      sample: ``key -> inst``; one problem instance (pytree of arrays).
      init: ``(key, inst) -> params``; initial optimizee parameters.
      loss: ``(params, inst, key) -> scalar``; training loss.
      test_metrics: ``(params, inst) -> {name: scalar}`` on held-out data, e.g.
        ``test_loss`` and ``test_accuracy``; None for tasks without a held-out split.
      steps_per_epoch: inner steps in one pass over the training split,
        ``ceil(examples / batch_size)``, for minibatch tasks; None for full-batch tasks.
    """

    name: str
    sample: Callable[[jax.Array], PyTree]
    init: Callable[[jax.Array, PyTree], PyTree]
    loss: Callable[[PyTree, PyTree, jax.Array], jax.Array]
    test_metrics: Callable[[PyTree, PyTree], dict] | None = None
    steps_per_epoch: int | None = None


def draw_problems(task: Task, key: jax.Array, count: int) -> tuple[PyTree, PyTree, jax.Array]:
    """Draws ``count`` instances with their initial parameters and run keys, stacked on axis 0.

    The same ``key`` always gives the same problems, so different optimizers can be compared on
    identical instances.

    Returns:
      ``(insts, params, run_keys)``, each with a leading axis of size ``count``.
    """

    def one(key):
        key_inst, key_init, key_run = jax.random.split(key, 3)
        inst = task.sample(key_inst)
        return inst, task.init(key_init, inst), key_run

    return jax.vmap(one)(jax.random.split(key, count))


def randomly_scaled(task: Task, log_range: float) -> Task:
    """``task`` with RNNProp's random scaling (Lv et al. 2017): each instance also draws a
    per-coordinate scale ``c = exp(u)``, ``u ~ U[-log_range, log_range]``, and its objective
    becomes ``f(c * x)``, started from ``x0 / c`` (the same starting point of ``f``).

    Meta-training on it keeps a learned optimizer from fitting one gradient scale. Instances
    are ``(inst, scales)`` with ``scales`` shaped like the parameters.
    """

    def sample(key):
        key_inst, key_scales = jax.random.split(key)
        inst = task.sample(key_inst)
        shapes = jax.eval_shape(task.init, key_inst, inst)
        leaves, treedef = jax.tree.flatten(shapes)
        keys = jax.random.split(key_scales, len(leaves))
        logs = [jax.random.uniform(k, leaf.shape, leaf.dtype, -log_range, log_range) for k, leaf in zip(keys, leaves)]
        return inst, jax.tree.unflatten(treedef, [jnp.exp(u) for u in logs])

    def scaled(params, scales):
        return jax.tree.map(lambda p, c: p * c, params, scales)

    def init(key, scaled_inst):
        inst, scales = scaled_inst
        return jax.tree.map(lambda p, c: p / c, task.init(key, inst), scales)

    def loss(params, scaled_inst, key):
        inst, scales = scaled_inst
        return task.loss(scaled(params, scales), inst, key)

    def test_metrics(params, scaled_inst):
        inst, scales = scaled_inst
        return task.test_metrics(scaled(params, scales), inst)

    return Task(f"{task.name}-randomly-scaled", sample, init, loss,
                test_metrics if task.test_metrics is not None else None, task.steps_per_epoch)
