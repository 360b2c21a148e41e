"""The field's benchmark metrics: speedup over tuned Adam, normalized final loss, and their
interquartile mean with a stratified bootstrap interval.

Definitions (learned_optimization's and VeLO's protocol, as issue 16 states it):

* A loss curve is smoothed by a trailing moving average of ``window`` steps (minibatch noise
  would otherwise decide when a target counts as reached).
* **Speedup** of an optimizer over a reference (tuned Adam): the number of steps the reference
  needs until its smoothed curve first reaches the optimizer's final smoothed loss, divided by
  the optimizer's number of steps. The reference runs ``cap`` times as many steps, so speedups
  up to ``cap`` are measured; a target the reference never reaches counts as ``cap``.
* **Normalized final loss**: the optimizer's final smoothed loss divided by the reference's
  final smoothed loss after the same number of steps (below 1: lower than tuned Adam).
* **IQM**: the mean of the middle half of all (task, seed) values (rliable's interquartile
  mean); its 95% interval is the percentile interval of IQMs of stratified bootstrap samples,
  seeds resampled with replacement within each task.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

# Adam's tuning grid: 15 half-decade learning rates, 1e-7 .. 1.
ADAM_GRID = tuple(float(10.0 ** (-7 + 0.5 * k)) for k in range(15))


def smoothed(curve: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average ``(T,)`` of a loss curve ``(T,)``; entry ``t`` averages steps
    ``max(0, t - window + 1) .. t``."""
    curve = np.asarray(curve, np.float64)
    sums = np.cumsum(np.concatenate([[0.0], curve]))
    ends = np.arange(1, len(curve) + 1)
    starts = np.maximum(0, ends - window)
    return (sums[ends] - sums[starts]) / (ends - starts)


def steps_to_reach(curve: np.ndarray, target: float) -> float:
    """The first step (index) at which ``curve`` is at most ``target``; ``inf`` if never."""
    reached = np.flatnonzero(np.asarray(curve) <= target)
    return float(reached[0]) if reached.size else float("inf")


def speedup(curve: np.ndarray, reference: np.ndarray, window: int) -> float:
    """Speedup of the optimizer whose loss curve (``(N + 1,)``, entry ``t`` after ``t`` steps) is
    ``curve`` over the reference curve ``(cap * N + 1,)``; capped at ``cap``; non-finite final
    losses (a diverged run) give 0."""
    steps = len(curve) - 1
    cap = (len(reference) - 1) / steps
    final = smoothed(curve, window)[-1]
    if not np.isfinite(final):
        return 0.0
    return float(min(steps_to_reach(smoothed(reference, window), final) / steps, cap))


def normalized_final_loss(curve: np.ndarray, reference: np.ndarray, window: int) -> float:
    """The optimizer's final smoothed loss over the reference's after as many steps."""
    steps = len(curve) - 1
    return float(smoothed(curve, window)[-1] / smoothed(reference[: steps + 1], window)[-1])


def iqm(values: np.ndarray) -> float:
    """Interquartile mean of all entries: the mean of those between the 25th and 75th percentiles."""
    return float(stats.trim_mean(np.ravel(values), 0.25))


def iqm_interval(values: np.ndarray, samples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of the IQM of ``values`` ``(tasks, seeds)`` under stratified
    bootstrap: per sample, each task's seeds are drawn with replacement."""
    values = np.asarray(values, np.float64)
    rng = np.random.default_rng(seed)
    tasks, seeds = values.shape
    picks = rng.integers(0, seeds, size=(samples, tasks, seeds))
    resampled = np.take_along_axis(values[None], picks, axis=2)
    estimates = stats.trim_mean(resampled.reshape(samples, -1), 0.25, axis=1)
    # An infinite estimate (a diverged run's loss in the middle half) would make the percentile's
    # interpolation between two of them inf - inf = NaN: interpolate between the largest floats.
    largest = np.finfo(np.float64).max
    low, high = np.percentile(np.clip(estimates, -largest, largest), [2.5, 97.5])
    return tuple(float(np.inf) if bound == largest else float(bound) for bound in (low, high))
