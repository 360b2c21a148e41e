"""How the optimizee is optimized: hand-designed baselines and learned architectures."""

from __future__ import annotations

from typing import Callable

from l2o.errors import L2OError
from l2o.optimizers.base import LearnedOptimizer, hyperparameters
from l2o.optimizers.baselines import BASELINES, DEFAULT_LEARNING_RATE_GRID, get_baseline
from l2o.optimizers.adafac_mlp import AdafacMLP
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


def get_learned(name: str, **kwargs) -> LearnedOptimizer:
    """Builds the learned architecture registered as ``name`` with hyperparameters ``kwargs``."""
    if name not in LEARNED:
        raise L2OError(f"unknown learned optimizer {name!r}; choose one of: {', '.join(LEARNED)}")
    try:
        return LEARNED[name](**kwargs)
    except TypeError as error:
        raise L2OError(f"bad hyperparameters for {name}: {error}") from None


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
