"""The gradient-estimator interface and the jitted meta-iteration built on any estimator."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Protocol

import jax
import optax

PyTree = Any


class GradientEstimator(Protocol):
    """Estimates the meta-gradient from a population of inner runs on the task in its ``task``
    field.

    What :func:`make_meta_step` relies on:

    * the estimator is a dataclass with a ``task`` field, so that the jitted step can rebind it
      with ``dataclasses.replace(estimator, task=task)`` (the task's data is then an input of
      the program, not a constant in it);
    * ``init_states(theta, key, population)`` returns the estimator's per-member states (a
      pytree whose leaves carry a leading population axis);
    * ``grad(theta, states, key)`` advances every member by one truncation and returns
      ``(meta_grad, states, metrics)``: ``meta_grad`` has ``theta``'s structure, ``states`` the
      structure of the states it was given; ``metrics`` holds the scalars ``meta_loss``
      (population mean of the truncation's meta-loss) and ``inner_loss`` (population mean of
      the last step's loss);
    * for imitation steps only, ``imitation_grad(theta, states, key)`` with the same contract.

    Estimators are registered by name in :data:`l2o.meta.estimators.ESTIMATORS`.
    """

    task: Any

    def init_states(self, theta: PyTree, key: jax.Array, population: int) -> PyTree: ...

    def grad(self, theta: PyTree, states: PyTree, key: jax.Array) -> tuple[PyTree, PyTree, dict]: ...


def make_meta_step(estimator, meta_optimizer: optax.GradientTransformation, imitate: bool = False):
    """One jitted meta-iteration: meta-gradient, meta-optimizer update, advanced inner states.

    Args:
      estimator: a gradient estimator (a dataclass with a ``task`` field, like
        :class:`~l2o.meta.TruncatedBPTT` and :class:`~l2o.meta.PES`).
      meta_optimizer: the optax transformation that applies the meta-gradient.
      imitate: use the estimator's ``imitation_grad`` instead of ``grad``.

    Returns:
      ``step(theta, meta_opt_state, states, key) -> (theta, meta_opt_state, states, metrics)``;
      ``metrics`` are the estimator's plus ``grad_norm``, the meta-gradient's global norm.
      ``step`` is a ``functools.partial`` of the jitted function over the task, which is passed
      as an argument so that its dataset is an input of the program, not a constant in it.
    """

    @jax.jit
    def step(task, theta, meta_opt_state, states, key):
        bound = dataclasses.replace(estimator, task=task)
        estimate = bound.imitation_grad if imitate else bound.grad
        grads, states, metrics = estimate(theta, states, key)
        updates, meta_opt_state = meta_optimizer.update(grads, meta_opt_state, theta)
        theta = optax.apply_updates(theta, updates)
        return theta, meta_opt_state, states, {**metrics, "grad_norm": optax.tree.norm(grads)}

    return functools.partial(step, estimator.task)
