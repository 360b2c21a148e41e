"""The gradient-estimator interface and the jitted meta-iteration built on any estimator."""

from __future__ import annotations

from typing import Any, Callable, Protocol

import jax
import optax

PyTree = Any


class GradientEstimator(Protocol):
    """Estimates the meta-gradient from a population of inner runs.

    ``init_states(theta, key, population)`` returns the estimator's per-member states (a pytree
    whose leaves carry a leading population axis). ``grad(theta, states, key)`` advances every
    member by one truncation and returns ``(meta_grad, states, metrics)``: ``meta_grad`` has
    ``theta``'s structure; ``metrics`` holds the scalars ``meta_loss`` (population mean of the
    truncation's meta-loss) and ``inner_loss`` (population mean of the last step's loss).
    """

    def init_states(self, theta: PyTree, key: jax.Array, population: int) -> PyTree: ...

    def grad(self, theta: PyTree, states: PyTree, key: jax.Array) -> tuple[PyTree, PyTree, dict]: ...


def make_meta_step(estimate: Callable, meta_optimizer: optax.GradientTransformation):
    """One jitted meta-iteration: meta-gradient, meta-optimizer update, advanced inner states.

    Args:
      estimate: ``(theta, states, key) -> (meta_grad, states, metrics)``, an estimator's
        ``grad`` (or ``imitation_grad``).
      meta_optimizer: the optax transformation that applies the meta-gradient.

    Returns:
      ``step(theta, meta_opt_state, states, key) -> (theta, meta_opt_state, states, metrics)``;
      ``metrics`` are the estimator's plus ``grad_norm``, the meta-gradient's global norm.
    """

    @jax.jit
    def step(theta, meta_opt_state, states, key):
        grads, states, metrics = estimate(theta, states, key)
        updates, meta_opt_state = meta_optimizer.update(grads, meta_opt_state, theta)
        theta = optax.apply_updates(theta, updates)
        return theta, meta_opt_state, states, {**metrics, "grad_norm": optax.tree.norm(grads)}

    return step
