"""How the optimizee is optimized: hand-designed baselines and learned architectures."""

from __future__ import annotations

import dataclasses
import typing
from typing import Callable

import pydantic

from l2o.errors import L2OError
from l2o.optimizers.adafac_mlp import AdafacMLP
from l2o.optimizers.base import LearnedOptimizer, hyperparameters
from l2o.optimizers.baselines import BASELINES, DEFAULT_LEARNING_RATE_GRID, get_baseline
from l2o.optimizers.dm import DM
from l2o.optimizers.multi import Group, Multi, param_labels
from l2o.optimizers.rnnprop import RNNProp
from l2o.optimizers.scale import ScaleBasic, ScaleHierarchical

LEARNED: dict[str, Callable[..., LearnedOptimizer]] = {
    "DM": DM,
    "RNNProp": RNNProp,
    "ScaleBasic": ScaleBasic,
    "ScaleHierarchical": ScaleHierarchical,
    "AdafacMLP": AdafacMLP,
    "Multi": Multi,
}


def _check_hyperparameter(name: str, key: str, annotation, value):
    """``value`` validated against the field's type annotation (strictly: ``"False"`` is not a
    bool, ``"44"`` not a list of sizes, NaN not a number); a list is accepted for a tuple."""
    strict = pydantic.TypeAdapter(annotation, config=pydantic.ConfigDict(strict=True, allow_inf_nan=False))
    try:
        return strict.validate_python(tuple(value) if isinstance(value, list) else value)
    except pydantic.ValidationError as error:
        first = error.errors()[0]
        where = "/".join(str(part) for part in (key, *first["loc"]))
        message = first["msg"][0].lower() + first["msg"][1:]
        raise L2OError(f"{name} hyperparameter {where}: {message}, got {value!r}") from None


def get_learned(name: str, **kwargs) -> LearnedOptimizer:
    """Builds the learned architecture registered as ``name`` with hyperparameters ``kwargs``,
    each checked against its declared type first (one-line :class:`L2OError` otherwise)."""
    if name not in LEARNED:
        raise L2OError(f"unknown learned optimizer {name!r}; choose one of: {', '.join(LEARNED)}")
    architecture = LEARNED[name]
    fields = [field.name for field in dataclasses.fields(architecture)]
    unknown = sorted(set(kwargs) - set(fields))
    if unknown:
        raise L2OError(f"unknown {name} hyperparameter(s) {', '.join(unknown)}; valid ones: {', '.join(fields)}")
    types = typing.get_type_hints(architecture)
    checked = {key: _check_hyperparameter(name, key, types[key], value) for key, value in kwargs.items()}
    return architecture(**checked)


__all__ = [
    "AdafacMLP",
    "BASELINES",
    "DEFAULT_LEARNING_RATE_GRID",
    "DM",
    "Group",
    "Multi",
    "LEARNED",
    "RNNProp",
    "ScaleBasic",
    "ScaleHierarchical",
    "LearnedOptimizer",
    "get_baseline",
    "get_learned",
    "hyperparameters",
    "param_labels",
]
