"""Optimizees: task families, the problems named on the command line, and Keras-L2O specs."""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Mapping, Sequence

from l2o.errors import L2OError
from l2o.tasks.augmentation import randomly_scaled, reparameterized
from l2o.tasks.base import Task, draw_problems
from l2o.tasks.classifiers import conv_classifier, mlp_classifier
from l2o.tasks.datasets import DATASETS, Dataset, load_dataset
from l2o.tasks.fixed import FIXED_TASKS
from l2o.tasks.image_families import FAST_VELO_DATASETS, image_conv_family, image_mlp_family
from l2o.tasks.quadratic import quadratic, scaled_quadratic, simple, simple_multi

# Task constructors by the ``target`` name of a Keras-L2O problem spec.
TARGETS: dict[str, Callable[..., Task]] = {
    "quadratic": quadratic,
    "scaled_quadratic": scaled_quadratic,
    "simple": simple,
    "simple_multi": simple_multi,
    "mlp_classifier": mlp_classifier,
    "conv_classifier": conv_classifier,
}

# Problems by their ``--problem`` name (DeepMind's names, and the constructors themselves).
# ``cifar-multi`` is the ``cifar`` network; what differs is its optimizer assignment.
TASKS: dict[str, Callable[..., Task]] = {
    "quadratic": quadratic,
    "scaled-quadratic": scaled_quadratic,
    "simple": simple,
    "simple-multi": simple_multi,
    "mnist": functools.partial(mlp_classifier, layers=(20,), activation="sigmoid", dataset="mnist"),
    "cifar": functools.partial(conv_classifier, dataset="cifar10"),
    "cifar-multi": functools.partial(conv_classifier, dataset="cifar10"),
    "mlp_classifier": mlp_classifier,
    "conv_classifier": conv_classifier,
    "image_mlp_family": image_mlp_family,
    "image_conv_family": image_conv_family,
    # VeLO's fast_mlp_diff_data with digits for SVHN (l2o.tasks.image_families).
    "fast_velo": functools.partial(image_mlp_family, datasets=FAST_VELO_DATASETS, image_size=8, layers=(32,),
                                   activations=("relu",), batch_size=64),
    # google/learned_optimization's fixed tasks of the benchmark (l2o.tasks.fixed).
    **FIXED_TASKS,
}


def _build(kind: str, name: str, constructor: Callable[..., Task], args: Sequence, kwargs: Mapping) -> Task:
    """Calls ``constructor`` after checking ``kwargs`` against its signature."""
    valid = list(inspect.signature(constructor).parameters)
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise L2OError(f"unknown option(s) {', '.join(unknown)} for {kind} {name!r}; valid: {', '.join(valid)}")
    try:
        return constructor(*args, **kwargs)
    except TypeError as error:
        raise L2OError(f"bad options for {kind} {name!r}: {error}") from None


def get_task(name: str, **kwargs) -> Task:
    """Builds the problem registered as ``name`` (:data:`TASKS`) with options ``kwargs``."""
    if name not in TASKS:
        raise L2OError(f"unknown problem {name!r}; choose one of: {', '.join(TASKS)}")
    return _build("problem", name, TASKS[name], (), kwargs)


def task_from_spec(spec: Mapping[str, Any]) -> Task:
    """Builds a task from a Keras-L2O problem entry ``{"target", "args", "kwargs"}``.

    Example: ``{"target": "mlp_classifier", "kwargs": {"layers": [20], "dataset": "mnist"}}``.
    """
    if not isinstance(spec, Mapping):
        raise L2OError(f"a problem spec must be an object with target/args/kwargs, got {spec!r}")
    unknown = sorted(set(spec) - {"target", "args", "kwargs"})
    if unknown:
        raise L2OError(f"unknown key(s) {', '.join(unknown)} in problem spec; valid: target, args, kwargs")
    target = spec.get("target")
    if target not in TARGETS:
        raise L2OError(f"unknown problem target {target!r}; choose one of: {', '.join(TARGETS)}")
    args, kwargs = spec.get("args", []), spec.get("kwargs", {})
    if not isinstance(args, (list, tuple)) or not isinstance(kwargs, Mapping):
        raise L2OError(f"problem spec for {target!r}: args must be a list and kwargs an object")
    return _build("target", target, TARGETS[target], args, kwargs)


def tasks_from_specs(specs: Sequence[Mapping[str, Any]]) -> list[Task]:
    """Builds every entry of a Keras-L2O ``problems`` list (see :func:`task_from_spec`)."""
    if isinstance(specs, (str, bytes, Mapping)) or not isinstance(specs, Sequence) or not specs:
        raise L2OError("problems must be a non-empty list of {target, args, kwargs} objects")
    return [task_from_spec(spec) for spec in specs]


__all__ = [
    "DATASETS",
    "Dataset",
    "TARGETS",
    "TASKS",
    "Task",
    "conv_classifier",
    "draw_problems",
    "randomly_scaled",
    "reparameterized",
    "get_task",
    "image_conv_family",
    "image_mlp_family",
    "load_dataset",
    "mlp_classifier",
    "quadratic",
    "scaled_quadratic",
    "simple",
    "simple_multi",
    "task_from_spec",
    "tasks_from_specs",
]
