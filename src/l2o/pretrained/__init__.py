"""Learned optimizers shipped inside l2o, loaded by name with no network.

A shipped optimizer is an ordinary saved optimizer (``optimizer.json`` and ``theta.msgpack``, see
:mod:`l2o.saved_optimizer`) in ``weights/NAME/`` of this package, listed in ``catalog.json`` with
a one-line description and the recipe (``recipes/RECIPE.json``, a configuration for ``l2o
train``) that reproduces it. Wherever l2o takes a run directory for a trained optimizer
(:func:`l2o.load`, :func:`l2o.load_optax`, ``l2o evaluate --path``, ``l2o benchmark``,
``l2o.torch.LearnedOptimizer``, ``l2o.keras.LearnedOptimizer``) it takes a shipped name too; a
path that exists is read as a path first. A recipe that no catalog entry names is a candidate
being meta-trained (docs/RESULTS.md says how far it got); it ships weights once it validates
better than the optimizer it would replace.
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path

from l2o.errors import L2OError

CATALOG_FILE = "catalog.json"
WEIGHTS_FOLDER = "weights"
RECIPES_FOLDER = "recipes"


def _root() -> Path:
    return Path(str(resources.files(__name__)))


def _catalog() -> dict[str, dict]:
    """``{name: {"description": ..., "recipe": ...}}`` as shipped."""
    return json.loads((_root() / CATALOG_FILE).read_text())


def names() -> list[str]:
    """The names of the shipped optimizers, sorted."""
    return sorted(_catalog())


def _entry(name: str) -> dict:
    catalog = _catalog()
    if name not in catalog:
        raise L2OError(f"{name!r} is not a shipped optimizer; l2o ships: {', '.join(sorted(catalog))}")
    return catalog[name]


def describe(name: str) -> str:
    """A one-line description of the shipped optimizer ``name``: what it is, how it was trained,
    how it did on the benchmark."""
    return _entry(name)["description"]


def weights_dir(name: str) -> Path:
    """The saved-optimizer folder of the shipped optimizer ``name`` (read-only package data)."""
    _entry(name)
    return _root() / WEIGHTS_FOLDER / name


def recipe(name: str) -> Path:
    """The configuration file that ``l2o train`` runs to reproduce the shipped optimizer ``name``."""
    return _root() / RECIPES_FOLDER / _entry(name)["recipe"]


def is_shipped(spec: str | os.PathLike) -> bool:
    """Whether ``spec`` names a shipped optimizer rather than a path (an existing path wins)."""
    return not Path(spec).exists() and os.fspath(spec) in _catalog()
