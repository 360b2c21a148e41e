"""The benchmark metrics against hand-computed examples."""

import numpy as np
import pytest

from l2o.benchmark_metrics import (
    ADAM_GRID,
    iqm,
    iqm_interval,
    normalized_final_loss,
    smoothed,
    speedup,
    steps_to_reach,
)


def test_adams_grid_is_fifteen_half_decades_from_1e_7_to_1():
    assert len(ADAM_GRID) == 15 and ADAM_GRID[0] == pytest.approx(1e-7) and ADAM_GRID[-1] == pytest.approx(1.0)
    np.testing.assert_allclose(np.diff(np.log10(ADAM_GRID)), 0.5)


def test_smoothing_is_a_trailing_mean():
    np.testing.assert_allclose(smoothed([4.0, 2.0, 6.0, 0.0], 2), [4.0, 3.0, 4.0, 3.0])
    np.testing.assert_allclose(smoothed([4.0, 2.0, 6.0, 0.0], 1), [4.0, 2.0, 6.0, 0.0])


def test_speedup_of_a_curve_that_reaches_the_target_at_a_known_step():
    """The optimizer ends at loss 0.5 after 10 steps. The reference (40 steps: cap 4) goes
    down by 0.05 a step from 2.0 and first reaches 0.5 at step 30: speedup 30 / 10 = 3."""
    reference = 2.0 - 0.05 * np.arange(41)
    curve = np.linspace(2.0, 0.5, 11)
    assert speedup(curve, reference, window=1) == pytest.approx(3.0)
    assert steps_to_reach(reference, 0.5) == 30
    # Adam against its own curve over the same budget: 1.
    assert speedup(reference[:11], reference, window=1) == pytest.approx(1.0)
    # A target the reference never reaches counts as the cap; a diverged run as 0.
    assert speedup(np.linspace(2.0, -5.0, 11), reference, window=1) == pytest.approx(4.0)
    assert speedup(np.array([2.0] * 10 + [np.nan]), reference, window=1) == 0.0
    # Normalized final loss: 0.5 against the reference's 1.5 after 10 steps.
    assert normalized_final_loss(curve, reference, window=1) == pytest.approx(0.5 / 1.5)


def test_speedup_uses_the_smoothed_final_loss():
    """A last minibatch that happens to be low does not count: with a window of 2 the target
    is the mean of the last two losses."""
    reference = 2.0 - 0.05 * np.arange(41)
    curve = np.concatenate([np.linspace(2.0, 1.0, 10), [0.0]])  # ..., 1.0, then a lucky 0.0
    target = 0.5  # (1.0 + 0.0) / 2
    expected = steps_to_reach(smoothed(reference, 2), target) / 10
    assert speedup(curve, reference, window=2) == pytest.approx(expected)


def test_iqm_is_the_mean_of_the_middle_half():
    values = np.array([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 100.0]])
    assert iqm(values) == pytest.approx(np.mean([3.0, 4.0, 5.0, 6.0]))


def test_iqm_interval_covers_the_estimate_and_shrinks_with_less_spread():
    rng = np.random.default_rng(1)
    wide = rng.lognormal(0.0, 1.0, size=(9, 5))
    narrow = np.exp(np.log(wide) * 0.1)
    low, high = iqm_interval(wide)
    assert low <= iqm(wide) <= high
    narrow_low, narrow_high = iqm_interval(narrow)
    assert narrow_high - narrow_low < (high - low) / 3
    assert iqm_interval(wide) == (low, high)  # seeded: reproducible
    # Stratified: a task whose seeds all agree contributes the same values to every sample.
    constant = np.full((3, 5), 2.0)
    assert iqm_interval(constant) == (pytest.approx(2.0), pytest.approx(2.0))
