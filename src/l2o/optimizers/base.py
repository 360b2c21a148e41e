"""The learned-optimizer interface shared by every architecture."""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

import jax
import optax

PyTree = Any


class LearnedOptimizer(Protocol):
    """A family of optimizers indexed by meta-parameters ``theta``.

    ``init(key)`` draws ``theta``; ``transform(theta)`` is the optimizer those meta-parameters
    define, as an optax transformation usable in any optax training loop. Implementations are
    frozen dataclasses whose fields are the architecture's hyperparameters, so that
    ``dataclasses.asdict(lopt)`` is everything needed to rebuild it.
    """

    name: str

    def init(self, key: jax.Array) -> PyTree: ...

    def transform(self, theta: PyTree) -> optax.GradientTransformationExtraArgs: ...


def _jsonable(value: Any) -> Any:
    """Named tuples become dicts, tuples lists, recursively."""
    if hasattr(value, "_asdict"):
        return {key: _jsonable(item) for key, item in value._asdict().items()}
    if isinstance(value, (tuple, list)):
        return [_jsonable(item) for item in value]
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    return value


def hyperparameters(lopt: LearnedOptimizer) -> dict:
    """The keyword arguments that rebuild ``lopt`` (JSON-serializable)."""
    return {field.name: _jsonable(getattr(lopt, field.name)) for field in dataclasses.fields(lopt)}
