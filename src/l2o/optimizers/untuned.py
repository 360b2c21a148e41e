"""Hand-designed optimizers meant to need no tuning, at their published default settings.

They are what a learned optimizer meant to need no tuning must beat, and what ``l2o benchmark
NAME`` runs as given (no learning-rate search):

- ``Muon`` (Jordan et al. 2024): optax's ``contrib.muon`` at its learning rate 0.02 (Nesterov
  momentum 0.95, orthogonalized by Newton-Schulz for 2-D parameters; AdamW at the same rate for
  the others, convolution kernels included).
- ``Prodigy`` (Mishchenko and Defazio 2024) and ``DAdaptAdamW`` (Defazio and Mishchenko 2023):
  learning-rate-free, at their multiplier 1.
"""

from __future__ import annotations

from typing import Callable

import optax

UNTUNED: dict[str, Callable[[], optax.GradientTransformation]] = {
    "Muon": lambda: optax.contrib.muon(0.02),
    "Prodigy": lambda: optax.contrib.prodigy(1.0),
    "DAdaptAdamW": lambda: optax.contrib.dadapt_adamw(1.0),
}


def untuned_name(name: str) -> str | None:
    """The registered spelling of ``name`` in :data:`UNTUNED` (any case), or None."""
    return {key.lower(): key for key in UNTUNED}.get(name.lower())
