"""Evolution-strategies meta-gradients: antithetic truncated ES and PES (Vicol et al. 2021).

Both perturb ``theta`` with Gaussian noise ``epsilon ~ N(0, sigma^2 I)`` in antithetic pairs
(``theta + epsilon`` and ``theta - epsilon`` run on the same instance with the same minibatches)
and need no backpropagation through the unroll, so they see the true dynamics (second
derivatives included) and cope with chaotic or non-differentiable inner runs.

Truncated ES estimates the gradient of each truncation's meta-loss alone, and so is biased for
the full-horizon objective, like truncated BPTT. PES keeps, per particle, the sum of every
perturbation applied since its inner run began; weighting the loss by that sum makes the sum
of its estimates over a run an unbiased estimate of the gradient of the whole run's (Gaussian
smoothed) meta-loss.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from l2o.draws import draw
from l2o.meta.losses import MetaLoss
from l2o.meta.sharding import population_size
from l2o.meta.truncated import initial_inner_states
from l2o.meta.unroll import InnerState, truncated_unroll
from l2o.optimizers.base import LearnedOptimizer
from l2o.tasks.base import Task

PyTree = Any


class ESState(NamedTuple):
    """Per-particle state of the ES estimators; leaves have a leading axis ``2 * pairs``.

    Particles ``i`` and ``i + pairs`` are an antithetic pair on the same inner problem.

    Attributes:
      inner: each particle's inner run.
      accumulator: ``theta``-shaped sum of the perturbations applied to the particle since its
        run began (PES); all zeros for truncated ES.
    """

    inner: InnerState
    accumulator: PyTree


def _antithetic_noise(theta: PyTree, key: jax.Array, pairs: int, sigma: float) -> PyTree:
    """Perturbations ``(2 * pairs, *leaf.shape)`` per leaf: ``pairs`` draws, then their negatives."""
    leaves, treedef = jax.tree.flatten(theta)
    keys = jax.random.split(key, len(leaves))
    noise = [sigma * draw(jax.random.normal, k, (pairs, *leaf.shape), leaf.dtype) for k, leaf in zip(keys, leaves)]
    return jax.tree.unflatten(treedef, [jnp.concatenate([n, -n]) for n in noise])


@dataclasses.dataclass(frozen=True)
class PES:
    """Persistent evolution strategies (Vicol, Metz and Sohl-Dickstein 2021).

    Args:
      task, lopt: the task family and the learned optimizer.
      unroll_length: inner steps per truncation; horizon: length of a whole inner run.
      objective: the meta-loss (:class:`l2o.meta.MetaLoss`).
      sigma: standard deviation of the perturbations of ``theta``.
      persistent: accumulate perturbations over the truncations of a run (PES); ``False``
        gives antithetic truncated ES, which uses only the current perturbation.
      keep_optimizer_state: if False, each truncation starts from a fresh optimizer state.
      min_length, stagger: random run lengths and staggered first runs, as
        :class:`~l2o.meta.TruncatedBPTT`.

    ``init_states(theta, key, population)`` starts ``population`` antithetic pairs
    (``2 * population`` particles).
    """

    task: Task
    lopt: LearnedOptimizer
    unroll_length: int
    horizon: int
    objective: MetaLoss = MetaLoss()
    sigma: float = 0.01
    persistent: bool = True
    keep_optimizer_state: bool = True
    min_length: int | None = None
    stagger: bool = False

    def init_states(self, theta, key: jax.Array, population: int) -> ESState:
        inner = initial_inner_states(self.task, self.lopt, theta, key, population, horizon=self.horizon,
                                     min_length=self.min_length, stagger=self.stagger)
        inner = jax.tree.map(lambda a: jnp.concatenate([a, a]), inner)  # pairs share their problem
        accumulator = jax.tree.map(lambda t: jnp.zeros((2 * population, *t.shape), t.dtype), theta)
        return ESState(inner, accumulator)

    def grad(self, theta, states: ESState, key: jax.Array):
        particles = population_size(states.inner)
        perturbations = _antithetic_noise(theta, key, particles // 2, self.sigma)

        def particle(perturbation, inner, accumulator):
            tx = self.lopt.transform(jax.tree.map(jnp.add, theta, perturbation))
            inner, trace = truncated_unroll(
                self.task, tx, inner, self.unroll_length, self.horizon, True, self.objective.max_multiplier,
                keep_optimizer_state=self.keep_optimizer_state, min_length=self.min_length,
                loss_before_step=self.objective.loss_before_step,
            )
            terms = self.objective.terms(trace.loss, trace.initial_loss)
            # Losses of a run that began in this truncation saw only this perturbation.
            began_here = trace.new_run
            old_weight = jnp.sum(jnp.where(began_here, 0.0, terms))
            estimate = jax.tree.map(
                lambda e, a: (jnp.sum(terms) * e + old_weight * a) / self.sigma**2, perturbation, accumulator
            )
            if self.persistent:
                keep = jnp.where(began_here[-1], 0.0, 1.0)
                accumulator = jax.tree.map(lambda e, a: e + keep * a, perturbation, accumulator)
            return estimate, inner, accumulator, jnp.sum(terms), trace.loss[-1]

        estimates, inner, accumulator, meta_losses, last = jax.vmap(particle)(
            perturbations, states.inner, states.accumulator
        )
        grads = jax.tree.map(lambda e: jnp.mean(e, axis=0), estimates)
        metrics = {"meta_loss": jnp.mean(meta_losses), "inner_loss": jnp.mean(last)}
        return grads, ESState(inner, accumulator), metrics


def ES(task: Task, lopt: LearnedOptimizer, **options) -> PES:
    """Antithetic truncated evolution strategies: :class:`PES` without accumulation."""
    return PES(task, lopt, persistent=False, **options)
