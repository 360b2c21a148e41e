"""Atomic saving and loading of trained optimizers.

A saved optimizer is a directory with ``optimizer.json`` (architecture name, hyperparameters,
format version, and how it was trained: :class:`TrainingInfo`) and ``theta.msgpack`` (the
meta-parameters, flax msgpack). Both are written atomically (:mod:`l2o.io`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import warnings
from pathlib import Path

import jax
from flax import serialization

from l2o import pretrained
from l2o.errors import L2OError
from l2o.io import atomic_write, write_json
from l2o.optimizers import get_learned, hyperparameters
from l2o.optimizers.base import LearnedOptimizer
from l2o.run_directory import RunDirectory

FORMAT_VERSION = 1
OPTIMIZER_FILE = "optimizer.json"
THETA_FILE = "theta.msgpack"


@dataclasses.dataclass(frozen=True)
class TrainingInfo:
    """How a saved optimizer was trained, as far as its files say (``None``: not recorded, as in
    optimizers saved before l2o recorded it).

    Attributes:
      architecture: the registered architecture name.
      epoch: the meta-training epoch these meta-parameters are from (0: untrained).
      num_epochs: the epochs the run was configured for.
      finished: whether the run reached ``num_epochs`` (``False`` while it trains or after it
        was interrupted).
      validation: the validation score at ``epoch`` (lower is better) and validation_steps its
        horizon.
      trained_on: names of the problems (or your own tasks) meta-trained on.
      custom_tasks: whether those were Task objects given in Python, not named problems.
      num_steps: the horizon of the inner runs meta-trained on.
    """

    architecture: str
    epoch: int | None = None
    num_epochs: int | None = None
    finished: bool | None = None
    validation: float | None = None
    validation_steps: int | None = None
    trained_on: tuple[str, ...] | None = None
    custom_tasks: bool | None = None
    num_steps: int | None = None


def save_optimizer(directory: str | os.PathLike, lopt: LearnedOptimizer, theta, **info) -> None:
    """Saves ``lopt`` and ``theta`` into ``directory``; ``info`` (fields of
    :class:`TrainingInfo`) is stored in optimizer.json with a checksum of the theta file."""
    directory = Path(directory)
    data = serialization.to_bytes(jax.device_get(theta))
    meta = {
        "format_version": FORMAT_VERSION,
        "name": lopt.name,
        "hyperparameters": hyperparameters(lopt),
        "theta_sha256": hashlib.sha256(data).hexdigest(),
        **info,
    }
    atomic_write(directory / THETA_FILE, data)
    write_json(directory / OPTIMIZER_FILE, meta)


def resolve_optimizer_dir(path: str | os.PathLike) -> Path:
    """The directory holding a saved optimizer: ``path/best`` of a run, ``path`` itself, or the
    weights of the shipped optimizer named ``path`` (:mod:`l2o.pretrained`) when no such path exists."""
    if pretrained.is_shipped(path):
        return pretrained.weights_dir(os.fspath(path))
    path = Path(path)
    for candidate in (RunDirectory(path).best, path):
        if (candidate / OPTIMIZER_FILE).is_file():
            return candidate
    if not path.exists():
        raise L2OError(f"{path} does not exist; pass the --save_path of an `l2o train` run or the name of a "
                       f"shipped optimizer ({', '.join(pretrained.names())})")
    raise L2OError(
        f"{path} is not a saved optimizer (no {OPTIMIZER_FILE} in it or in {path / 'best'}); "
        "pass the --save_path of an `l2o train` run"
    )


def _read_meta(directory: Path) -> dict:
    meta_path = directory / OPTIMIZER_FILE
    try:
        meta = json.loads(meta_path.read_text())
        meta["name"], meta["hyperparameters"], meta["format_version"]  # noqa: B018 (required keys)
    except (ValueError, KeyError, TypeError):
        raise L2OError(f"{meta_path} is corrupted; re-run `l2o train` to write a new one") from None
    if meta["format_version"] != FORMAT_VERSION:
        raise L2OError(
            f"{meta_path} has format version {meta['format_version']}, this l2o reads {FORMAT_VERSION}; "
            "re-train with this version"
        )
    return meta


def training_info(path: str | os.PathLike) -> TrainingInfo:
    """How the optimizer at ``path`` (a run directory or a saved optimizer) was trained.

    For a run directory, ``finished`` says whether its final optimizer (``last/``) exists.
    """
    directory = resolve_optimizer_dir(path)
    return _training_info(directory, _read_meta(directory))


def _training_info(directory: Path, meta: dict) -> TrainingInfo:
    """:func:`training_info` from a saved optimizer's folder and its ``optimizer.json``."""
    fields = {field.name for field in dataclasses.fields(TrainingInfo)} - {"architecture", "finished"}
    values = {key: meta[key] for key in fields if meta.get(key) is not None}
    if "trained_on" in values:
        values["trained_on"] = tuple(values["trained_on"])
    finished = None
    run = RunDirectory(directory.parent)
    if directory == run.best and run.config.is_file():
        finished = (run.last / OPTIMIZER_FILE).is_file()
    return TrainingInfo(architecture=meta["name"], finished=finished, **values)


def _warn_if_untrained(path: Path, info: TrainingInfo) -> None:
    """Warns when the optimizer at ``path`` is untrained or from a run that has not finished."""
    if info.epoch is None:
        return
    score = "unknown" if info.validation is None else f"{info.validation:.3f}"
    what = (f"{path} holds the optimizer of meta-training epoch {info.epoch}"
            + (f" of {info.num_epochs}" if info.num_epochs else "")
            + f" (validation score {score}; trained on {', '.join(info.trained_on or ('?',))}"
            + (f", {info.num_steps}-step runs)" if info.num_steps else ")"))
    if info.epoch == 0:
        warnings.warn(f"{what}: it is untrained, the run never improved on its initialization "
                      "or has only just started", stacklevel=3)
    elif info.finished is False:
        warnings.warn(f"{what}: its run has not finished (still training, or interrupted: "
                      "`l2o resume` continues it)", stacklevel=3)


def load_optimizer(path: str | os.PathLike) -> tuple[LearnedOptimizer, dict]:
    """Loads ``(lopt, theta)`` from a run directory or a saved-optimizer directory.

    Warns (``UserWarning``) when the optimizer is untrained (epoch 0) or its run has not
    finished; :func:`training_info` tells how it was trained.
    """
    directory = resolve_optimizer_dir(path)
    meta = _read_meta(directory)
    lopt = get_learned(meta["name"], **meta["hyperparameters"])
    theta_path = directory / THETA_FILE
    if not theta_path.is_file():
        raise L2OError(f"{theta_path} is missing; re-run `l2o train` to write it")
    data = theta_path.read_bytes()
    if meta.get("theta_sha256", hashlib.sha256(data).hexdigest()) != hashlib.sha256(data).hexdigest():
        raise L2OError(f"{theta_path} does not match {OPTIMIZER_FILE} (a write was interrupted); "
                       "re-run `l2o train` or point at another saved optimizer")
    template = lopt.init(jax.random.PRNGKey(0))
    try:
        theta = serialization.from_bytes(template, data)
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
    _warn_if_untrained(Path(path), _training_info(directory, meta))
    return lopt, theta
