"""A learning-rate multiplier for an optimizer whose update already has its own size.

A learned optimizer outputs the step itself, so its "learning rate" is a multiplier of that step
(1: as meta-trained), like the ``lr`` of ``l2o.torch`` and the ``learning_rate`` of ``l2o.keras``.
"""

from __future__ import annotations

import math

import optax

from l2o.errors import L2OError


def with_learning_rate(tx: optax.GradientTransformation,
                       learning_rate: optax.ScalarOrSchedule) -> optax.GradientTransformation:
    """``tx`` with every update multiplied by ``learning_rate``: a number >= 0, or an optax
    schedule giving the multiplier of step ``t`` (counted from 0). A multiplier of exactly 1 returns
    ``tx`` itself, so the default adds no state and changes no number."""
    if callable(learning_rate):
        return optax.chain(tx, optax.scale_by_schedule(learning_rate))
    try:
        rate = float(learning_rate)
    except (TypeError, ValueError):
        raise L2OError(f"learning_rate must be a number >= 0 or an optax schedule, got {learning_rate!r}") from None
    if not (math.isfinite(rate) and rate >= 0.0):
        raise L2OError(f"learning_rate must be a finite number >= 0 (a multiplier of the learned update), "
                       f"got {learning_rate!r}")
    return tx if rate == 1.0 else optax.chain(tx, optax.scale(rate))
