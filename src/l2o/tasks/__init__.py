"""Optimizees: task families and the registry that names them."""

from __future__ import annotations

from typing import Callable

from l2o.errors import L2OError
from l2o.tasks.base import Task, draw_problems
from l2o.tasks.mlp import mlp_classifier
from l2o.tasks.quadratic import quadratic, scaled_quadratic, simple

TASKS: dict[str, Callable[..., Task]] = {
    "quadratic": quadratic,
    "scaled-quadratic": scaled_quadratic,
    "simple": simple,
    "mlp_classifier": mlp_classifier,
}


def get_task(name: str, **kwargs) -> Task:
    """Builds the task registered as ``name`` with keyword arguments ``kwargs``."""
    if name not in TASKS:
        raise L2OError(f"unknown problem {name!r}; choose one of: {', '.join(TASKS)}")
    try:
        return TASKS[name](**kwargs)
    except TypeError as error:
        raise L2OError(f"bad options for problem {name!r}: {error}") from None


__all__ = ["TASKS", "Task", "draw_problems", "get_task", "mlp_classifier", "quadratic", "scaled_quadratic", "simple"]
