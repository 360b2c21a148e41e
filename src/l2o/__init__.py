"""l2o: learned optimizers in JAX.

Meta-train a learned optimizer (:class:`MetaTrainer`), compare it with tuned hand-designed ones
(:func:`evaluate`), and use it to train any model as an optax transformation (:func:`load_optax`).
"""

from __future__ import annotations

import os

import optax

from l2o import pretrained
from l2o.config import TrainConfig
from l2o.errors import L2OError
from l2o.evaluate import Fixed, Tuned, evaluate
from l2o.meta import MetaTrainer
from l2o.optimizers import BASELINES, DM, LEARNED, get_baseline, get_learned
from l2o.optimizers.guard import guarded
from l2o.optimizers.multiplier import with_learning_rate
from l2o.presets import preset_config
from l2o.saved_optimizer import TrainingInfo, load_optimizer, training_info
from l2o.tasks import TASKS, Task, get_task, mlp_classifier, quadratic, scaled_quadratic, simple

__version__ = "0.1.0"


def load(path: str | os.PathLike):
    """Loads a trained optimizer: returns ``(optimizer, theta)``.

    ``path`` is the ``--save_path`` of an ``l2o train`` run (its best optimizer is loaded), a
    directory holding ``optimizer.json`` and ``theta.msgpack``, or the name of an optimizer shipped
    with l2o (:func:`l2o.pretrained.names`; a path that exists is read as a path first). Warns when the optimizer is
    untrained or its run has not finished; :func:`training_info` says how it was trained.
    """
    return load_optimizer(path)


def load_optax(path: str | os.PathLike,
               learning_rate: optax.ScalarOrSchedule = 1.0) -> optax.GradientTransformationExtraArgs:
    """Loads a trained optimizer as a ready optax transformation (see :func:`load`), guarded for
    any parameter tree (:func:`l2o.optimizers.guard.guarded`): integer leaves get zero updates,
    and a step with a non-finite gradient or update is skipped (zero updates, state unchanged,
    counted), so the parameters never become NaN through it.

    ``learning_rate`` multiplies every update: 1.0 (the default) is the update as meta-trained, a
    number >= 0 scales it, and an optax schedule (a function of the step count) scales step ``t``
    by ``learning_rate(t)``, as ``l2o.torch``'s ``lr`` and ``l2o.keras``'s ``learning_rate`` do.
    ``optax.linear_schedule(1.0, 0.0, num_steps)`` tells it the run's length. A skipped step does
    not advance the schedule."""
    lopt, theta = load_optimizer(path)
    return guarded(with_learning_rate(lopt.transform(theta), learning_rate))


__all__ = [
    "BASELINES",
    "DM",
    "Fixed",
    "L2OError",
    "LEARNED",
    "MetaTrainer",
    "TASKS",
    "Task",
    "TrainConfig",
    "TrainingInfo",
    "Tuned",
    "evaluate",
    "get_baseline",
    "get_learned",
    "get_task",
    "load",
    "load_optax",
    "pretrained",
    "mlp_classifier",
    "preset_config",
    "quadratic",
    "scaled_quadratic",
    "simple",
    "training_info",
]
