"""Training strategies: what each period of meta-training trains on (Keras L2O's strategies).

Meta-training is divided into *periods* of ``evaluation_period`` epochs, each ending with a
validation. Before a period, :func:`plan` fixes its :class:`Plan`: the truncation length, the
horizon, the probability of an imitation step, and the horizon validation runs at. A strategy
(an entry of :data:`STRATEGIES`, built from the ``strategy`` section) chooses the horizons and
moves on after each validation:

* ``simple``: the horizon is ``num_steps``, validations run at ``validation_steps``.
* ``curriculum``: the horizon grows by stages (``curriculum_schedule``: a list, or
  ``base * power ** i``); after at least ``min_periods`` periods in a stage, a validation at the
  *next* stage's horizon that does not improve on the stage's best moves training on to that
  stage (at most ``max_stages`` stages); with ``max_periods``, a stage also ends after that
  many periods even while it still improves, so that a fixed budget reaches every stage.

Whatever the strategy, the truncation length is ``unroll_length``, a fixed integer, a
per-period list, or drawn per period from a geometric distribution (``unroll_distribution`` a
probability), and the imitation probability is ``p_teacher`` annealed by
``annealing_schedule``. Every choice is a function of the seed, the period index and the
curriculum position, so a resumed run makes the same choices.
"""

from __future__ import annotations

import inspect
import math
from typing import TYPE_CHECKING, NamedTuple, Protocol

import numpy as np

if TYPE_CHECKING:
    from l2o.config import ImitationConfig, StrategyConfig


class Plan(NamedTuple):
    """What one period trains on.

    Attributes:
      unroll_length: inner steps per truncation; horizon: inner steps per run.
      p_teacher: probability that a meta-iteration is an imitation step.
      validation_steps: horizon of the validation that ends the period.
    """

    unroll_length: int
    horizon: int
    p_teacher: float
    validation_steps: int


class Stage(NamedTuple):
    """Position in a curriculum: the stage, and periods trained in it so far."""

    index: int
    periods: int


FIRST_STAGE = Stage(0, 0)

class Strategy(Protocol):
    """What a :data:`STRATEGIES` entry builds from the ``strategy`` section."""

    def horizons(self, stage: Stage) -> tuple[int, int]:
        """The training horizon at ``stage`` and the horizon of the validation that ends the period."""

    def after_validation(self, stage: Stage, improved: bool) -> tuple[Stage, bool]:
        """The position after a period whose validation did or did not ``improve``, and whether
        the stage changed (which makes later validation scores incomparable with earlier ones)."""


class Simple:
    """one horizon, num_steps; validations at validation_steps"""

    def __init__(self, config: StrategyConfig):
        self.config = config

    def horizons(self, stage: Stage) -> tuple[int, int]:
        return self.config.num_steps, self.config.validation_steps or self.config.num_steps

    def after_validation(self, stage: Stage, improved: bool) -> tuple[Stage, bool]:
        return stage, False


class Curriculum:
    """horizons grow by stages, each validated at the next stage's horizon"""

    def __init__(self, config: StrategyConfig):
        self.config = config
        schedule = config.curriculum_schedule
        if isinstance(schedule, list):
            horizons = list(schedule)
        else:
            horizons = [int(schedule["base"] * schedule["power"] ** i) for i in range(config.max_stages)]
        self.stage_horizons = horizons[: config.max_stages] if config.max_stages > 0 else horizons

    def horizons(self, stage: Stage) -> tuple[int, int]:
        horizons = self.stage_horizons
        return horizons[stage.index], horizons[min(stage.index + 1, len(horizons) - 1)]

    def after_validation(self, stage: Stage, improved: bool) -> tuple[Stage, bool]:
        """A stage ends once it has trained ``min_periods`` periods and its validation stopped
        improving, or once it has trained ``max_periods`` periods (when set); the last stage
        never ends."""
        stage = stage._replace(periods=stage.periods + 1)
        last = stage.index + 1 >= len(self.stage_horizons)
        stalled = not improved and stage.periods >= self.config.min_periods
        full = self.config.max_periods is not None and stage.periods >= self.config.max_periods
        if (stalled or full) and not last:
            return Stage(stage.index + 1, 0), True
        return stage, False


STRATEGIES: dict[str, type[Strategy]] = {"simple": Simple, "curriculum": Curriculum}


def describe_strategies() -> str:
    """``name: description | ...`` of every registered strategy, for help texts."""
    return " | ".join(f"{name}: {inspect.getdoc(cls).splitlines()[0]}" for name, cls in STRATEGIES.items())


def make_strategy(config: StrategyConfig) -> Strategy:
    """The strategy ``config.name`` names."""
    return STRATEGIES[config.name](config)


def period_unroll_length(config: StrategyConfig, seed: int, period: int, horizon: int) -> int:
    """The truncation length of ``period``, at most ``horizon``."""
    distribution = config.unroll_distribution
    if distribution is None:
        length = config.unroll_length
    elif isinstance(distribution, list):
        length = distribution[min(period, len(distribution) - 1)]
    elif isinstance(distribution, float):
        length = int(np.random.default_rng([seed, period]).geometric(distribution))
    else:
        length = distribution
    return max(1, min(length, horizon))


def annealed_p_teacher(config: ImitationConfig, period: int) -> float:
    """``p_teacher * exp(-period * a)`` for a number ``a``, or the list's entry for ``period``."""
    schedule = config.annealing_schedule
    if isinstance(schedule, list):
        return float(schedule[min(period, len(schedule) - 1)])
    return config.p_teacher * math.exp(-period * schedule)


def plan(config: StrategyConfig, imitation: ImitationConfig, seed: int, period: int, stage: Stage) -> Plan:
    """The :class:`Plan` of ``period`` (0-based) at curriculum position ``stage``."""
    horizon, validation = make_strategy(config).horizons(stage)
    unroll = period_unroll_length(config, seed, period, horizon)
    if config.horizon_unrolls is not None:  # Keras L2O's depth: reset after this many truncations
        horizon = unroll * config.horizon_unrolls
    return Plan(unroll, horizon, annealed_p_teacher(imitation, period), validation)


def epoch_iterations(config: StrategyConfig, current: Plan, steps_per_epoch: int | None) -> int:
    """Meta-iterations in one epoch of ``current``.

    With ``data_epochs`` on a minibatch task (``steps_per_epoch`` inner steps per pass over its
    training split): the truncations that cover ``data_epochs`` passes. Otherwise ``repeat``
    full-horizon runs.
    """
    if config.data_epochs is not None and steps_per_epoch is not None:
        return -(-config.data_epochs * steps_per_epoch // current.unroll_length)
    return config.repeat * -(-current.horizon // current.unroll_length)
