"""Checkpoints of a meta-training run that continue it exactly.

A checkpoint holds everything the outer loop carries between epochs: the meta-parameters, the
meta-optimizer state, every population member's inner state (its parameters, optimizer state,
problem instance, step counter and PRNG key; ES accumulators too), the best meta-parameters so
far and the counters. The estimator's per-iteration keys are derived from the seed and the
iteration counter, so nothing else is random. Files are written atomically under
``checkpoints/epoch-<N>.msgpack``; the newest :data:`KEEP` are kept, so a damaged newest file
falls back to the one before.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np
from flax import serialization

from l2o.errors import L2OError
from l2o.io import atomic_write, fingerprint, json_text
from l2o.run_directory import RunDirectory

FORMAT_VERSION = 1
KEEP = 2
# Checkpoints written before the configuration had sections name it by a hash of these flat
# settings, less those added later that keep their defaults (:func:`_legacy_fingerprint`).
_LEGACY_NAMES = (
    "problem problem_options extra_problems optimizer optimizer_options num_epochs num_steps unroll_length "
    "n_samplings learning_rate meta_betas clip_norm weighting log_objective scale_objective loss_epsilon "
    "numerator_epsilon max_multiplier second_derivatives estimator perturbation_scale random_scaling strategy "
    "unroll_distribution horizon_unrolls repeat data_epochs keep_optimizer_state validation_steps "
    "curriculum_schedule min_periods max_periods max_stages teachers p_teacher annealing_schedule "
    "imitation_learning_rate evaluation_period evaluation_epochs log_period seed"
).split()
_LEGACY_LATER_DEFAULTS = {"extra_problems": [], "repeat": 1, "data_epochs": None, "keep_optimizer_state": True,
                          "max_periods": None}

PyTree = Any


class Progress(NamedTuple):
    """Where a run stands at the end of an epoch.

    Attributes:
      theta: current meta-parameters; meta_opt_state: the meta-optimizer's state;
      imitation_opt_state: the imitation optimizer's (``optax.EmptyState()`` when imitation
        shares the meta-optimizer).
      states: the estimator's population states (of the first problem when there are several).
      best_theta, best_score: best meta-parameters by validation and their score.
      epoch: epochs completed; iteration: meta-iterations completed.
      records: lines of ``metrics.jsonl`` written so far.
      stage, stage_periods: curriculum position (:class:`l2o.meta.strategies.Stage`).
      extra_states: the population states of each further problem (``TrainConfig.extra_problems``).
    """

    theta: PyTree
    meta_opt_state: PyTree
    imitation_opt_state: PyTree
    states: PyTree
    best_theta: PyTree
    best_score: float
    epoch: int
    iteration: int
    records: int
    stage: int
    stage_periods: int
    extra_states: tuple = ()


def _legacy_fingerprint(config) -> str | None:
    """The hash by which a checkpoint written before the sections named ``config`` (a
    :class:`~l2o.config.TrainConfig`), or ``None`` when no such checkpoint could belong to it
    (a setting that did not exist then is not at its default)."""
    flat, defaults = config.flat(), type(config)().flat()
    if any(flat[name] != defaults[name] for name in flat if name not in _LEGACY_NAMES):
        return None
    identity = {name: flat[name] for name in _LEGACY_NAMES
                if name not in _LEGACY_LATER_DEFAULTS or flat[name] != _LEGACY_LATER_DEFAULTS[name]}
    return fingerprint(identity)


def _same_configuration(payload: dict, config) -> bool:
    """Whether a checkpoint's payload was written by a run of ``config``.

    Compared as validated configurations, so a setting added later with a default (absent from
    older checkpoints) cannot make a checkpoint of the same run look foreign.
    """
    if "config" not in payload:
        return payload.get("fingerprint") == _legacy_fingerprint(config)
    try:
        return type(config).from_dict(json.loads(payload["config"])) == config
    except (L2OError, ValueError, TypeError):
        return False


def _path(run_dir: Path, epoch: int) -> Path:
    return RunDirectory(run_dir).checkpoints / f"epoch-{epoch:06d}.msgpack"


def checkpoint_files(run_dir: str | Path) -> list[Path]:
    """Checkpoint files of a run, newest first."""
    return sorted(RunDirectory(run_dir).checkpoints.glob("epoch-*.msgpack"), reverse=True)


def save_progress(run_dir: str | Path, progress: Progress, config) -> None:
    """Writes ``progress`` of a run of ``config`` (a :class:`~l2o.config.TrainConfig`) atomically,
    then removes all but the newest :data:`KEEP` checkpoints."""
    run_dir = Path(run_dir)
    payload = {
        "format_version": FORMAT_VERSION,
        "config": json_text(config.to_dict()),
        **serialization.to_state_dict(progress._asdict()),
    }
    atomic_write(_path(run_dir, progress.epoch), serialization.msgpack_serialize(payload))
    for old in checkpoint_files(run_dir)[KEEP:]:
        old.unlink(missing_ok=True)


def _fill_dataless(stored: dict, template: dict) -> dict:
    """``stored`` with every entry it lacks that holds no data in ``template`` (only zero-size
    arrays, or nothing) taken from ``template``, recursively.

    So checkpoints written before such an entry existed still resume: ``extra_states`` of a
    single-problem run, the zero-size structure witness of an optimizer state
    (:func:`l2o.optimizers.base.structure_witness`).
    """
    filled = dict(stored)
    for key, value in template.items():
        if key not in stored:
            if all(np.size(leaf) == 0 for leaf in jax.tree.leaves(value)):
                filled[key] = value
        elif isinstance(value, dict) and isinstance(stored[key], dict):
            filled[key] = _fill_dataless(stored[key], value)
    return filled


def _restore(path: Path, template: Progress, config) -> Progress:
    """Reads one checkpoint; raises ``ValueError`` with the reason it cannot be used."""
    try:
        payload = serialization.msgpack_restore(path.read_bytes())
    except Exception as error:  # msgpack raises many types on damaged bytes
        raise ValueError(f"it is damaged ({type(error).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format_version") != FORMAT_VERSION:
        version = payload.get("format_version") if isinstance(payload, dict) else None
        raise ValueError(f"it has format version {version}, this l2o reads {FORMAT_VERSION}")
    if not _same_configuration(payload, config):
        raise ValueError("it belongs to another configuration than config.json")
    stored = _fill_dataless({k: payload[k] for k in Progress._fields if k in payload},
                            serialization.to_state_dict(template._asdict()))
    try:
        restored = serialization.from_state_dict(template._asdict(), stored)
    except Exception as error:
        raise ValueError(f"its contents do not match this run ({type(error).__name__})") from None
    progress = Progress(**restored)
    return progress._replace(
        best_score=float(progress.best_score),
        epoch=int(progress.epoch),
        iteration=int(progress.iteration),
        records=int(progress.records),
        stage=int(progress.stage),
        stage_periods=int(progress.stage_periods),
    )


def load_progress(run_dir: str | Path, template: Progress, config) -> Progress | None:
    """The newest usable checkpoint of ``run_dir``'s run of ``config``, or ``None`` when it has none.

    ``template`` gives the structure (a freshly started run's :class:`Progress`). A checkpoint
    that is damaged, from another format version or another configuration is skipped with a
    warning and the previous one is used; if checkpoints exist but none is usable,
    :class:`L2OError` is raised and nothing is changed.
    """
    files = checkpoint_files(run_dir)
    for path in files:
        try:
            return _restore(path, template, config)
        except ValueError as reason:
            warnings.warn(f"skipping checkpoint {path}: {reason}", stacklevel=2)
    if files:
        raise L2OError(
            f"no usable checkpoint in {RunDirectory(run_dir).checkpoints}; start a new run with "
            "`l2o train --save_path NEW_DIR`"
        )
    return None
