"""Meta-losses: how a truncation's per-step inner losses become one scalar to minimize."""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax.numpy as jnp

from l2o.errors import L2OError

# Step weights of a truncation of a given length, by name: ``sum`` weighs every step 1 (the
# paper's objective), ``mean`` 1/length, ``final`` only the last step (the notebook's
# end-result objective).
WEIGHTINGS: dict[str, Callable[[int], jnp.ndarray]] = {
    "sum": lambda length: jnp.ones((length,)),
    "mean": lambda length: jnp.full((length,), 1.0 / length),
    "final": lambda length: jnp.zeros((length,)).at[-1].set(1.0),
}


def _check_weighting(weighting: str) -> None:
    if weighting not in WEIGHTINGS:
        raise L2OError(f"unknown meta-loss weighting {weighting!r}; choose one of: {', '.join(WEIGHTINGS)}")


def step_weights(weighting: str, length: int) -> jnp.ndarray:
    """Weights over the steps of a truncation, shape ``(length,)``, by a :data:`WEIGHTINGS` name."""
    _check_weighting(weighting)
    return WEIGHTINGS[weighting](length)


@dataclasses.dataclass(frozen=True)
class MetaLoss:
    """How a truncation's per-step inner losses become the scalar meta-training minimizes.

    Each step's loss ``l`` (of a run whose initial loss is ``l0``) becomes a value

    * ``l``, or with ``scale_objective`` the relative loss ``(l + e) / (l0 + epsilon)``, where
      ``e`` is ``epsilon`` with ``numerator_epsilon`` and 0 without;
    * then its ``log(value + epsilon)`` with ``log_objective`` (``log(value)`` when scaled
      with a numerator epsilon, which already keeps it positive),

    and the values are combined with the :func:`step_weights` of ``weighting``.

    Attributes:
      weighting: ``sum``, ``mean`` or ``final``.
      log_objective: minimize logs, so that 1e-10 -> 1e-20 counts as much as 1 -> 1e-10.
      scale_objective: divide by the run's initial loss (progress relative to the start).
      epsilon: numerical floor of the log and of the scaling's denominator.
      numerator_epsilon: add ``epsilon`` to the scaled loss's numerator too.
      max_multiplier: if positive, a run whose loss exceeds ``max_multiplier`` times its
        initial loss is cut there (its later steps are not taken; a new run starts), as
        DeepMind's and Keras L2O's ``obj_train_max_multiplier``.
      loss_before_step: take each step's loss from its gradient evaluation (at the parameters
        before the step, as learned_optimization does) instead of one more forward pass after it
        (:func:`l2o.meta.unroll.truncated_unroll`): a cheaper inner step, the losses shifted by one.
    """

    weighting: str = "sum"
    log_objective: bool = False
    scale_objective: bool = False
    epsilon: float = 1e-30
    numerator_epsilon: bool = True
    max_multiplier: float = 0.0
    loss_before_step: bool = False

    def __post_init__(self):
        _check_weighting(self.weighting)  # computes nothing: JAX may not be started yet (l2o.distributed)

    def terms(self, losses: jnp.ndarray, initial_losses: jnp.ndarray) -> jnp.ndarray:
        """Each step's weighted term, ``(..., length)``; ``initial_losses`` as ``losses``."""
        values = losses
        if self.scale_objective:
            numerator = losses + (self.epsilon if self.numerator_epsilon else 0.0)
            values = numerator / (initial_losses + self.epsilon)
        if self.log_objective:
            values = jnp.log(values if self.scale_objective and self.numerator_epsilon else values + self.epsilon)
        return step_weights(self.weighting, losses.shape[-1]) * values

    def __call__(self, losses: jnp.ndarray, initial_losses: jnp.ndarray) -> jnp.ndarray:
        """The meta-loss, ``(..., length) -> (...)``: the sum of :meth:`terms`."""
        return jnp.sum(self.terms(losses, initial_losses), axis=-1)
