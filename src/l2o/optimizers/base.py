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


def hyperparameters(lopt: LearnedOptimizer) -> dict:
    """The keyword arguments that rebuild ``lopt`` (JSON-serializable)."""
    return {
        field.name: list(value) if isinstance(value, tuple) else value
        for field in dataclasses.fields(lopt)
        for value in [getattr(lopt, field.name)]
    }
