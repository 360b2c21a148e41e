"""Summary metrics of final losses, shared by validation, evaluation and reports."""

from __future__ import annotations

import math

import numpy as np

# Losses are floored here before taking logs, so an exact zero counts as 1e-45 (float32's
# smallest subnormal) instead of -inf.
_FLOOR = 1e-45


def log10_mean(losses) -> float:
    """DeepMind's metric: ``log10(mean(losses))``; ``inf`` if any loss is not finite."""
    losses = np.asarray(losses, np.float64)
    if not np.all(np.isfinite(losses)):
        return math.inf
    return float(np.log10(max(float(np.mean(losses)), _FLOOR)))


def mean_log10(losses) -> float:
    """The notebook's metric: ``mean(log10(losses))``; ``inf`` if any loss is not finite."""
    losses = np.asarray(losses, np.float64)
    if not np.all(np.isfinite(losses)):
        return math.inf
    return float(np.mean(np.log10(np.maximum(losses, _FLOOR))))


def validation_score(final_losses, log_objective: bool) -> float:
    """Lower-is-better summary of final losses ``(n,)`` used to select the best meta-parameters:
    :func:`mean_log10` when training on a log objective, else DeepMind's :func:`log10_mean`."""
    return mean_log10(final_losses) if log_objective else log10_mean(final_losses)
