"""Atomic saving and loading of trained optimizers.

A saved optimizer is a directory with ``optimizer.json`` (architecture name, hyperparameters,
format version) and ``theta.msgpack`` (the meta-parameters, flax msgpack). Every file is written
to a temporary name in the same directory and renamed into place, so a crash never leaves a
half-written file and never destroys the previous version.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import jax
from flax import serialization

from l2o.errors import L2OError
from l2o.optimizers import get_learned, hyperparameters
from l2o.optimizers.base import LearnedOptimizer

FORMAT_VERSION = 1
OPTIMIZER_FILE = "optimizer.json"
THETA_FILE = "theta.msgpack"


def atomic_write(path: str | os.PathLike, data: bytes | str) -> None:
    """Writes ``data`` to ``path`` through a temporary file and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_optimizer(directory: str | os.PathLike, lopt: LearnedOptimizer, theta, **info) -> None:
    """Saves ``lopt`` and ``theta`` into ``directory``; ``info`` is stored in optimizer.json."""
    directory = Path(directory)
    meta = {
        "format_version": FORMAT_VERSION,
        "name": lopt.name,
        "hyperparameters": hyperparameters(lopt),
        **info,
    }
    atomic_write(directory / THETA_FILE, serialization.to_bytes(jax.device_get(theta)))
    atomic_write(directory / OPTIMIZER_FILE, json.dumps(meta, indent=2) + "\n")


def resolve_optimizer_dir(path: str | os.PathLike) -> Path:
    """The directory holding a saved optimizer: ``path/best`` of a run, or ``path`` itself."""
    path = Path(path)
    for candidate in (path / "best", path):
        if (candidate / OPTIMIZER_FILE).is_file():
            return candidate
    if not path.exists():
        raise L2OError(f"{path} does not exist; pass the --save_path of an `l2o train` run")
    raise L2OError(
        f"{path} is not a saved optimizer (no {OPTIMIZER_FILE} in it or in {path / 'best'}); "
        "pass the --save_path of an `l2o train` run"
    )


def load_optimizer(path: str | os.PathLike) -> tuple[LearnedOptimizer, dict]:
    """Loads ``(lopt, theta)`` from a run directory or a saved-optimizer directory."""
    directory = resolve_optimizer_dir(path)
    meta_path = directory / OPTIMIZER_FILE
    try:
        meta = json.loads(meta_path.read_text())
        name, options, version = meta["name"], meta["hyperparameters"], meta["format_version"]
    except (ValueError, KeyError, TypeError):
        raise L2OError(f"{meta_path} is corrupted; re-run `l2o train` to write a new one") from None
    if version != FORMAT_VERSION:
        raise L2OError(
            f"{meta_path} has format version {version}, this l2o reads {FORMAT_VERSION}; "
            "re-train with this version"
        )
    lopt = get_learned(name, **options)
    theta_path = directory / THETA_FILE
    if not theta_path.is_file():
        raise L2OError(f"{theta_path} is missing; re-run `l2o train` to write it")
    template = lopt.init(jax.random.PRNGKey(0))
    try:
        theta = serialization.from_bytes(template, theta_path.read_bytes())
        shapes_match = jax.tree.all(
            jax.tree.map(lambda a, b: a.shape == b.shape, template, theta)
        )
    except Exception:  # msgpack and flax raise many types on damaged bytes
        shapes_match = False
    if not shapes_match:
        raise L2OError(
            f"{theta_path} is corrupted or does not match {OPTIMIZER_FILE}; "
            "re-run `l2o train` or point at another saved optimizer"
        )
    return lopt, theta
