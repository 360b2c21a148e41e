"""Truncated backpropagation through time: the meta-gradient of one truncation per member."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax

from l2o.meta.losses import meta_loss
from l2o.meta.unroll import InnerState, truncated_unroll
from l2o.optimizers.base import LearnedOptimizer
from l2o.tasks.base import Task


def truncated_bptt_loss(
    task: Task,
    lopt: LearnedOptimizer,
    *,
    unroll_length: int,
    horizon: int,
    weighting: str = "sum",
    log_objective: bool = False,
    second_derivatives: bool = False,
) -> Callable:
    """Builds ``(theta, states) -> (loss, (states, losses))`` for a population of states.

    ``states`` carries a leading population axis ``P``; ``losses`` has shape
    ``(P, unroll_length)``; ``loss`` is the meta-loss averaged over the population. Its gradient
    with respect to ``theta`` is the truncated-BPTT meta-gradient (states are constants at the
    start of a truncation).
    """

    def population_loss(theta, states: InnerState):
        tx = lopt.transform(theta)

        def member(state):
            state, losses = truncated_unroll(
                task, tx, state, unroll_length, horizon, second_derivatives
            )
            return meta_loss(losses, weighting, log_objective), (state, losses)

        member_losses, (states, losses) = jax.vmap(member)(states)
        return jnp.mean(member_losses), (states, losses)

    return population_loss


def make_meta_step(population_loss: Callable, meta_optimizer: optax.GradientTransformation):
    """One jitted meta-iteration: meta-gradient, meta-optimizer update, advanced inner states.

    Returns:
      ``step(theta, meta_opt_state, states) -> (theta, meta_opt_state, states, metrics)`` where
      ``metrics`` holds scalars ``meta_loss``, ``inner_loss`` (population mean of the last
      step's loss) and ``grad_norm``.
    """

    @jax.jit
    def step(theta, meta_opt_state, states):
        (loss, (states, losses)), grads = jax.value_and_grad(population_loss, has_aux=True)(
            theta, states
        )
        updates, meta_opt_state = meta_optimizer.update(grads, meta_opt_state, theta)
        theta = optax.apply_updates(theta, updates)
        metrics = {
            "meta_loss": loss,
            "inner_loss": jnp.mean(losses[:, -1]),
            "grad_norm": optax.tree.norm(grads),
        }
        return theta, meta_opt_state, states, metrics

    return step
