"""Hand-designed baselines: optax transformations built from a learning rate.

Every baseline is a function ``learning_rate -> optax.GradientTransformation``. The learning rate
may be a traced scalar, so a whole grid of learning rates can be run at once under ``jax.vmap``.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import optax

from l2o.errors import L2OError

BaselineFactory = Callable[[float], optax.GradientTransformation]


def sgd(learning_rate) -> optax.GradientTransformation:
    """Plain gradient descent: ``x <- x - lr * g``."""
    return optax.sgd(learning_rate)


def momentum(learning_rate, decay: float = 0.9) -> optax.GradientTransformation:
    """Heavy-ball momentum: ``m <- decay * m + g``; ``x <- x - lr * m``."""
    return optax.sgd(learning_rate, momentum=decay)


def nag(learning_rate, decay: float = 0.9) -> optax.GradientTransformation:
    """Nesterov's accelerated gradient in optax's (Sutskever et al. 2013) form."""
    return optax.sgd(learning_rate, momentum=decay, nesterov=True)


def rmsprop(learning_rate, decay: float = 0.9, eps: float = 1e-8) -> optax.GradientTransformation:
    """RMSProp: ``v <- decay * v + (1 - decay) g^2``; ``x <- x - lr * g / sqrt(v + eps)`` (optax
    places eps inside the root)."""
    return optax.rmsprop(learning_rate, decay=decay, eps=eps)


def adam(learning_rate, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8):
    """Adam (Kingma and Ba 2015) with bias correction."""
    return optax.adam(learning_rate, b1=b1, b2=b2, eps=eps)


BASELINES: dict[str, BaselineFactory] = {
    "SGD": sgd,
    "Momentum": momentum,
    "NAG": nag,
    "RMSProp": rmsprop,
    "Adam": adam,
}

# The learning rate each baseline runs at when nobody tunes it (the usual framework defaults).
DEFAULT_LEARNING_RATES: dict[str, float] = {"SGD": 0.01, "Momentum": 0.01, "NAG": 0.01, "RMSProp": 1e-3, "Adam": 1e-3}

# Learning rates searched when tuning a baseline: 10^-6 ... 10^3 in quarter decades.
DEFAULT_LEARNING_RATE_GRID: tuple[float, ...] = tuple(float(x) for x in np.logspace(-6, 3, 37))


def get_baseline(name: str) -> BaselineFactory:
    """Returns the baseline factory registered as ``name`` (case-insensitive)."""
    by_lower = {key.lower(): key for key in BASELINES}
    if name.lower() not in by_lower:
        raise L2OError(f"unknown optimizer {name!r}; choose one of: {', '.join(BASELINES)}")
    return BASELINES[by_lower[name.lower()]]
