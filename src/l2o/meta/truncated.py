"""Truncated backpropagation through time: the meta-gradient of one truncation per member."""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp

from l2o.meta.losses import MetaLoss, step_weights
from l2o.meta.unroll import InnerState, fresh_state, run_start, truncated_unroll
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
    teachers: tuple = (),
    imitate: bool = False,
    keep_optimizer_state: bool = True,
    min_length: int | None = None,
) -> Callable:
    """Builds ``(theta, states) -> (loss, (states, losses))`` for a population of states.

    ``states`` carries a leading population axis ``P``; ``losses`` has shape
    ``(P, unroll_length)``; ``loss`` is the meta-loss averaged over the population. Its gradient
    with respect to ``theta`` is the truncated-BPTT meta-gradient (states are constants at the
    start of a truncation). With ``imitate``, the runs follow the ``teachers``' updates and
    ``loss`` is the imitation loss: the ``objective.weighting``-weighted sum over steps of the
    mean squared distance between the learned updates and the teachers' at the same points.
    Without ``keep_optimizer_state`` each truncation starts from a fresh optimizer state; with
    ``min_length``, new runs have random lengths (:func:`l2o.meta.unroll.run_start`).
    """

    def population_loss(theta, states: InnerState):
        tx = lopt.transform(theta)

        def member(state):
            state, trace = truncated_unroll(
                task, tx, state, unroll_length, horizon, second_derivatives, objective.max_multiplier, teachers,
                follow_teachers=imitate, keep_optimizer_state=keep_optimizer_state, min_length=min_length,
                loss_before_step=objective.loss_before_step,
            )
            if imitate:
                loss = jnp.sum(step_weights(objective.weighting, unroll_length) * trace.imitation)
            else:
                loss = objective(trace.loss, trace.initial_loss)
            return loss, (state, trace.loss)

        member_losses, (states, losses) = jax.vmap(member)(states)
        return jnp.mean(member_losses), (states, losses)

    return population_loss


def initial_inner_states(
    task: Task, lopt: LearnedOptimizer, theta, key: jax.Array, count: int, teachers: tuple = (), *,
    horizon: int = 0, min_length: int | None = None, stagger: bool = False,
) -> InnerState:
    """``count`` fresh inner runs (leading axis ``count``), one per split of ``key``.

    With ``min_length`` their lengths are random (:func:`l2o.meta.unroll.run_start`); with
    ``stagger`` each first run starts at a uniformly random point of its own length, so that
    the population's runs end at different times and every truncation mixes early and late
    training (the parameters are fresh either way: a staggered first run is a shorter one).
    """

    def start(k):
        first = run_start(jax.random.fold_in(k, 3), horizon, min_length)
        if not stagger:
            return first
        return first + jax.random.randint(jax.random.fold_in(k, 4), (), 0, jnp.maximum(horizon - first, 1))

    def states(task, theta, key):
        tx = lopt.transform(theta)
        return jax.vmap(lambda k: fresh_state(task, tx, k, teachers, start(k)))(jax.random.split(key, count))

    return jax.jit(states)(task, theta, key)


@dataclasses.dataclass(frozen=True)
class TruncatedBPTT:
    """Truncated BPTT (Andrychowicz et al. 2016): differentiate each truncation's meta-loss.

    Biased for the full-horizon objective (the influence of ``theta`` on the state at the start
    of a truncation is dropped), cheap, and low-variance. Its states are an :class:`InnerState`
    per member; ``key`` is unused (the states carry their own keys). With ``teachers``,
    :meth:`imitation_grad` gives the gradient of the imitation loss on the same states. With
    ``min_length`` runs last a log-uniform number of steps in ``[min_length, horizon]``; with
    ``stagger`` the population's first runs start at random points (:func:`initial_inner_states`).
    """

    task: Task
    lopt: LearnedOptimizer
    unroll_length: int
    horizon: int
    objective: MetaLoss = MetaLoss()
    second_derivatives: bool = False
    teachers: tuple = ()
    keep_optimizer_state: bool = True
    min_length: int | None = None
    stagger: bool = False

    def init_states(self, theta, key: jax.Array, population: int) -> InnerState:
        return initial_inner_states(self.task, self.lopt, theta, key, population, self.teachers, horizon=self.horizon,
                                    min_length=self.min_length, stagger=self.stagger)

    def _grad(self, theta, states: InnerState, imitate: bool):
        population_loss = truncated_bptt_loss(
            self.task, self.lopt, unroll_length=self.unroll_length, horizon=self.horizon,
            objective=self.objective, second_derivatives=self.second_derivatives,
            teachers=self.teachers, imitate=imitate, keep_optimizer_state=self.keep_optimizer_state,
            min_length=self.min_length,
        )
        (loss, (states, losses)), grads = jax.value_and_grad(population_loss, has_aux=True)(theta, states)
        return grads, states, {"meta_loss": loss, "inner_loss": jnp.mean(losses[:, -1])}

    def grad(self, theta, states: InnerState, key: jax.Array):
        del key
        return self._grad(theta, states, imitate=False)

    def imitation_grad(self, theta, states: InnerState, key: jax.Array):
        """Like :meth:`grad`, for the imitation loss (its ``meta_loss`` metric is that loss)."""
        del key
        return self._grad(theta, states, imitate=True)
