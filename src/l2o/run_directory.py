"""The run directory of a meta-training run: its layout, its single owner, its replacement.

Layout (every name but ``.lock``, which :mod:`l2o.io` owns, is spelled here and nowhere else)::

    config.json         the resolved TrainConfig
    custom_tasks.json   names of the Task objects given to MetaTrainer(tasks=...), if any
    metrics.jsonl       one JSON object per log or validation event
    best/  last/        saved optimizers (l2o.saved_optimizer): best by validation, and the final one
    checkpoints/        what `l2o resume` continues from (l2o.meta.run_checkpoints)
    evaluation-*/       reports of `l2o evaluate --path`
    .lock               held (flock) by the one process that writes the run (l2o.io.exclusive_directory)

A process owns the directory while it holds an exclusive ``flock`` on ``.lock``; the kernel
releases it when the process ends, however it ends, so a killed run never leaves it stuck.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import Iterator

from l2o.errors import L2OError
from l2o.io import exclusive_directory, write_json

CONFIG_FILE = "config.json"
CUSTOM_TASKS_FILE = "custom_tasks.json"
METRICS_FILE = "metrics.jsonl"
BEST = "best"
LAST = "last"
CHECKPOINTS = "checkpoints"
EVALUATION_PREFIX = "evaluation-"


class RunDirectory:
    """Paths of one run directory and the operations that keep it consistent."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    config = property(lambda self: self.path / CONFIG_FILE)
    custom_tasks = property(lambda self: self.path / CUSTOM_TASKS_FILE)
    metrics = property(lambda self: self.path / METRICS_FILE)
    best = property(lambda self: self.path / BEST)
    last = property(lambda self: self.path / LAST)
    checkpoints = property(lambda self: self.path / CHECKPOINTS)

    def holds_run(self) -> bool:
        """Whether an earlier run wrote here (its configuration or an optimizer)."""
        return self.config.exists() or self.best.exists()

    @contextlib.contextmanager
    def owned(self) -> Iterator["RunDirectory"]:
        """Holds the directory's lock for the block (:func:`l2o.io.exclusive_directory`); another
        process holding it is a one-line error. On entry, temporary files that a killed writer
        left behind are removed."""
        with exclusive_directory(self.path, "--save_path"):
            yield self

    def clear(self) -> None:
        """Removes everything an earlier run wrote, the saved optimizers first, so that an
        interruption part-way never leaves an old optimizer beside a new configuration."""
        for name in (BEST, LAST, CONFIG_FILE, CUSTOM_TASKS_FILE, CHECKPOINTS, METRICS_FILE):
            _remove(self.path / name)
        for report in self.path.glob(f"{EVALUATION_PREFIX}*"):
            _remove(report)

    def record_custom_tasks(self, names: list[str] | None) -> None:
        """Records the names of the Task objects a run was given (``None``: the configuration's)."""
        if names is None:
            self.custom_tasks.unlink(missing_ok=True)
        else:
            write_json(self.custom_tasks, {"tasks": names})

    def read_config(self):
        """The run's :class:`~l2o.config.TrainConfig`; a damaged ``config.json`` is a one-line error."""
        from l2o.config import TrainConfig

        try:
            values = json.loads(self.config.read_text())
        except ValueError:
            raise L2OError(f"{self.config} is corrupted (not JSON); re-run `l2o train`") from None
        if not isinstance(values, dict):
            raise L2OError(f"{self.config} is corrupted (not a JSON object); re-run `l2o train`")
        try:
            return TrainConfig.from_dict(values)
        except TypeError:
            raise L2OError(f"{self.config} is corrupted; re-run `l2o train`") from None

    def custom_task_names(self) -> list[str] | None:
        """The names :meth:`record_custom_tasks` recorded, or ``None`` for a configuration's problems."""
        if not self.custom_tasks.is_file():
            return None
        try:
            return list(json.loads(self.custom_tasks.read_text())["tasks"])
        except (ValueError, KeyError, TypeError):
            return ["(unreadable custom_tasks.json)"]


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
