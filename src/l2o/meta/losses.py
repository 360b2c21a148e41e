"""Meta-losses: how a truncation's per-step inner losses become one scalar to minimize."""

from __future__ import annotations

import jax.numpy as jnp

from l2o.errors import L2OError

WEIGHTINGS = ("sum", "mean", "final")


def step_weights(weighting: str, length: int) -> jnp.ndarray:
    """Weights over the steps of a truncation, shape ``(length,)``.

    ``sum``: all ones (the paper's objective); ``mean``: all ``1/length``; ``final``: only the
    last step (the notebook's end-result objective).
    """
    if weighting == "sum":
        return jnp.ones((length,))
    if weighting == "mean":
        return jnp.full((length,), 1.0 / length)
    if weighting == "final":
        return jnp.zeros((length,)).at[-1].set(1.0)
    raise L2OError(f"unknown meta-loss weighting {weighting!r}; choose one of: {', '.join(WEIGHTINGS)}")


def step_terms(
    losses: jnp.ndarray, weighting: str = "sum", log_objective: bool = False, epsilon: float = 1e-30
) -> jnp.ndarray:
    """Each step's term of the meta-loss, ``(..., length) -> (..., length)``.

    With ``log_objective`` each loss is replaced by ``log(loss + epsilon)`` first, so that
    progress from 1e-10 to 1e-20 counts as much as from 1 to 1e-10; then it is weighted.
    """
    values = jnp.log(losses + epsilon) if log_objective else losses
    return step_weights(weighting, losses.shape[-1]) * values


def meta_loss(
    losses: jnp.ndarray, weighting: str = "sum", log_objective: bool = False, epsilon: float = 1e-30
) -> jnp.ndarray:
    """Weighted combination of per-step losses ``(length,) -> ()`` (the sum of :func:`step_terms`)."""
    return jnp.sum(step_terms(losses, weighting, log_objective, epsilon), axis=-1)
