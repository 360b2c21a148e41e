"""The registry of gradient estimators: the names the ``estimator`` section accepts.

Each entry builds a :class:`~l2o.meta.estimator.GradientEstimator` from that section;
the first line of its docstring is the description the command line shows. Adding an estimator
is adding an entry here (the configuration's choices, the CLI's help and the contract tests in
``tests/test_estimators.py`` follow the registry).
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Callable

import optax

from l2o.errors import L2OError
from l2o.meta.es import PES
from l2o.meta.estimator import GradientEstimator
from l2o.meta.losses import MetaLoss
from l2o.meta.truncated import TruncatedBPTT
from l2o.optimizers import get_baseline

if TYPE_CHECKING:
    from l2o.config import EstimatorConfig


def make_teacher(spec: dict) -> optax.GradientTransformation:
    """The optax optimizer of a ``{"name": ..., "options": {...}}`` teacher specification."""
    factory = get_baseline(spec["name"])
    try:
        return factory(**spec["options"])
    except TypeError:
        valid = ", ".join(inspect.signature(factory).parameters)
        raise L2OError(
            f"bad options {spec['options']} for teacher {spec['name']}; valid options: {valid} "
            "(learning_rate is required)"
        ) from None


def _truncated(config: EstimatorConfig, task, lopt, teachers, **common) -> GradientEstimator:
    """truncated BPTT, second derivatives on or off; biased for the whole horizon"""
    return TruncatedBPTT(task, lopt, second_derivatives=config.second_derivatives, teachers=teachers, **common)


def _es(config: EstimatorConfig, task, lopt, teachers, **common) -> GradientEstimator:
    """antithetic evolution strategies on each truncation; biased like truncated"""
    return PES(task, lopt, sigma=config.perturbation_scale, persistent=False, **common)


def _pes(config: EstimatorConfig, task, lopt, teachers, **common) -> GradientEstimator:
    """persistent ES, perturbations accumulated over a run; unbiased for the whole horizon"""
    return PES(task, lopt, sigma=config.perturbation_scale, persistent=True, **common)


ESTIMATORS: dict[str, Callable[..., GradientEstimator]] = {
    "truncated": _truncated,
    "es": _es,
    "pes": _pes,
}


def describe_estimators() -> str:
    """``name: description | ...`` of every registered estimator, for help texts."""
    return " | ".join(f"{name}: {inspect.getdoc(build).splitlines()[0]}" for name, build in ESTIMATORS.items())


def make_estimator(config: EstimatorConfig, task, lopt, *, unroll_length: int, horizon: int, objective: MetaLoss,
                   teachers: tuple = (), min_length: int | None = None, stagger: bool = False) -> GradientEstimator:
    """The gradient estimator registered as ``config.name``, for truncations of ``unroll_length``
    steps of runs of ``horizon`` steps (of random lengths from ``min_length`` when set, the first
    ones staggered with ``stagger``), minimizing ``objective`` (imitating ``teachers``, optax
    transformations, where the estimator supports imitation)."""
    if config.name not in ESTIMATORS:
        raise L2OError(f"unknown estimator {config.name!r}; choose one of: {', '.join(ESTIMATORS)}")
    return ESTIMATORS[config.name](config, task, lopt, teachers, unroll_length=unroll_length, horizon=horizon,
                                   objective=objective, keep_optimizer_state=config.keep_optimizer_state,
                                   min_length=min_length, stagger=stagger)
