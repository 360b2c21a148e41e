"""Truncated backpropagation through time: the meta-gradient of one truncation per member."""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp

from l2o.meta.losses import MetaLoss
from l2o.meta.unroll import InnerState, fresh_state, truncated_unroll
from l2o.optimizers.base import LearnedOptimizer
from l2o.tasks.base import Task


def truncated_bptt_loss(
    task: Task,
    lopt: LearnedOptimizer,
    *,
    unroll_length: int,
    horizon: int,
    objective: MetaLoss = MetaLoss(),
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
            state, trace = truncated_unroll(
                task, tx, state, unroll_length, horizon, second_derivatives, objective.max_multiplier
            )
            return objective(trace.loss, trace.initial_loss), (state, trace.loss)

        member_losses, (states, losses) = jax.vmap(member)(states)
        return jnp.mean(member_losses), (states, losses)

    return population_loss


def initial_inner_states(task: Task, lopt: LearnedOptimizer, theta, key: jax.Array, count: int) -> InnerState:
    """``count`` fresh inner runs (leading axis ``count``), one per split of ``key``."""
    tx = lopt.transform(theta)
    return jax.vmap(lambda k: fresh_state(task, tx, k))(jax.random.split(key, count))


@dataclasses.dataclass(frozen=True)
class TruncatedBPTT:
    """Truncated BPTT (Andrychowicz et al. 2016): differentiate each truncation's meta-loss.

    Biased for the full-horizon objective (the influence of ``theta`` on the state at the start
    of a truncation is dropped), cheap, and low-variance. Its states are an :class:`InnerState`
    per member; ``key`` is unused (the states carry their own keys).
    """

    task: Task
    lopt: LearnedOptimizer
    unroll_length: int
    horizon: int
    objective: MetaLoss = MetaLoss()
    second_derivatives: bool = False

    def init_states(self, theta, key: jax.Array, population: int) -> InnerState:
        return initial_inner_states(self.task, self.lopt, theta, key, population)

    def grad(self, theta, states: InnerState, key: jax.Array):
        del key
        population_loss = truncated_bptt_loss(
            self.task, self.lopt, unroll_length=self.unroll_length, horizon=self.horizon,
            objective=self.objective, second_derivatives=self.second_derivatives,
        )
        (loss, (states, losses)), grads = jax.value_and_grad(population_loss, has_aux=True)(theta, states)
        return grads, states, {"meta_loss": loss, "inner_loss": jnp.mean(losses[:, -1])}
