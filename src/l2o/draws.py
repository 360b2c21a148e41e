"""Random arrays of any shape, drawn flat.

``jax.random`` (partitionable threefry) gives a multi-dimensional draw exactly the numbers of
the flat draw of the same size, reshaped; but XLA:CPU compiles the multi-dimensional counter
arithmetic several times slower (about 1.3 s against 0.2 s for a ``(4, 10, 10)`` uniform draw
on the development machine). Every draw that happens inside a compiled program (new problem
instances and initializations in meta-training, ES perturbations) goes through :func:`draw`.
"""

from __future__ import annotations

import math
from typing import Callable

import jax


def draw(sampler: Callable, key: jax.Array, shape: tuple[int, ...], *args, **kwargs) -> jax.Array:
    """``sampler(key, shape, *args, **kwargs)``, computed as a flat draw and reshaped.

    Args:
      sampler: a ``jax.random`` function taking ``(key, shape, ...)``, e.g. ``jax.random.normal``.
      key: the PRNG key.
      shape: the shape of the result.

    Returns:
      An array of ``shape``, equal to ``sampler(key, shape, *args, **kwargs)``.
    """
    return sampler(key, (math.prod(shape),), *args, **kwargs).reshape(shape)
