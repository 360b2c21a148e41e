"""The outer loop: meta-optimizer, validation, best-so-far selection, metrics, progress."""

from __future__ import annotations

import inspect
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import numpy as np
import optax
from tqdm.auto import tqdm

from l2o.checkpoint import atomic_write, save_optimizer
from l2o.errors import L2OError
from l2o.meta.es import PES
from l2o.meta.estimator import GradientEstimator, make_meta_step
from l2o.meta.losses import MetaLoss
from l2o.meta.truncated import TruncatedBPTT
from l2o.meta.resume import Progress, checkpoint_files, config_fingerprint, load_progress, save_progress
from l2o.meta.strategies import Stage, after_validation, epoch_iterations, plan
from l2o.meta.sharding import population_mesh, population_size, replicate, shard_population
from l2o.meta.unroll import trajectory
from l2o.metrics import log10_mean, mean_log10
from l2o.optimizers import get_baseline, get_learned
from l2o.tasks import draw_problems, get_task, randomly_scaled

if TYPE_CHECKING:
    from l2o.config import TrainConfig

# Streams of randomness derived from the run's seed; evaluation uses other streams.
_THETA, _TRAIN, _VALIDATION, _ESTIMATOR, _IMITATION = 0, 1, 2, 3, 4
METRICS_FILE = "metrics.jsonl"


class TrainResult(NamedTuple):
    """What :meth:`MetaTrainer.train` returns.

    Attributes:
      theta: meta-parameters with the best validation score.
      best_score: that score (lower is better; see :func:`validation_score`).
      last_theta: meta-parameters at the end of training.
      history: one dict per log or validation event (also written to metrics.jsonl).
      meta_iterations: number of meta-gradient steps taken.
      seconds: wall time of the training loop, compilation included.
    """

    theta: Any
    best_score: float
    last_theta: Any
    history: list
    meta_iterations: int
    seconds: float


def validation_score(final_losses: np.ndarray, log_objective: bool) -> float:
    """Lower-is-better summary of final losses ``(n,)``.

    ``mean(log10(loss))`` when training on a log objective, else DeepMind's
    ``log10(mean(loss))``; any non-finite loss gives ``inf``.
    """
    return mean_log10(final_losses) if log_objective else log10_mean(final_losses)


def make_teacher(spec: dict) -> optax.GradientTransformation:
    """The optax optimizer of a ``{"name": ..., "options": {...}}`` teacher specification."""
    factory = get_baseline(spec["name"])
    try:
        return factory(**spec["options"])
    except TypeError:
        valid = ", ".join(inspect.signature(factory).parameters)
        raise L2OError(
            f"bad options {spec['options']} for teacher {spec['name']}; valid options: {valid} "
            "(learning_rate is required)"
        ) from None


def make_estimator(config: TrainConfig, task, lopt, unroll_length: int, horizon: int) -> GradientEstimator:
    """The gradient estimator ``config.estimator`` names, for truncations of ``unroll_length``
    steps of runs of ``horizon`` steps (with ``config.teachers`` for imitation)."""
    objective = MetaLoss(
        weighting=config.weighting,
        log_objective=config.log_objective,
        scale_objective=config.scale_objective,
        epsilon=config.loss_epsilon,
        numerator_epsilon=config.numerator_epsilon,
        max_multiplier=config.max_multiplier,
    )
    common = dict(unroll_length=unroll_length, horizon=horizon, objective=objective,
                  keep_optimizer_state=config.keep_optimizer_state)
    if config.estimator == "truncated":
        teachers = tuple(make_teacher(spec) for spec in config.teachers)
        return TruncatedBPTT(task, lopt, second_derivatives=config.second_derivatives, teachers=teachers, **common)
    return PES(task, lopt, sigma=config.perturbation_scale, persistent=config.estimator == "pes", **common)


class MetaTrainer:
    """Meta-trains a learned optimizer on a population of task instances.

    With several devices, the population is sharded over as many of them as divide its size
    (:mod:`l2o.meta.sharding`); the results equal the single-device ones up to float rounding.

    Args:
      config: the run's configuration.
      save_path: run directory; when given, ``config.json``, ``metrics.jsonl``, ``best/`` (best
        optimizer by validation), ``last/`` (the final one) and ``checkpoints/`` (what
        :meth:`train` with ``resume=True`` continues from) are written there.
    """

    def __init__(self, config: TrainConfig, save_path: str | Path | None = None):
        self.config = config
        self.save_path = Path(save_path) if save_path is not None else None
        self.task = get_task(config.problem, **config.problem_options)
        # The task meta-trained on; validation always uses self.task.
        self.train_task = randomly_scaled(self.task, config.random_scaling) if config.random_scaling > 0 else self.task
        self.lopt = get_learned(config.optimizer, **config.optimizer_options)
        meta_optimizer = optax.adam(config.learning_rate, *config.meta_betas)
        if config.clip_norm > 0:
            meta_optimizer = optax.chain(optax.clip_by_global_norm(config.clip_norm), meta_optimizer)
        # A non-finite meta-gradient (a diverged inner run) skips the update instead of
        # poisoning theta and the Adam moments.
        self.meta_optimizer = optax.apply_if_finite(meta_optimizer, max_consecutive_errors=100)
        # Imitation steps use the meta-optimizer, or their own Adam (seed 002's imitation_optimizer).
        self.imitation_optimizer = None
        if config.imitation_learning_rate is not None:
            self.imitation_optimizer = optax.apply_if_finite(
                optax.adam(config.imitation_learning_rate), max_consecutive_errors=100)
        first = plan(config, 0, Stage(0, 0))
        # One compiled meta-step per (unroll length, horizon) and validation per horizon.
        self._meta_steps: dict = {}
        self._validations: dict = {}
        self.estimator = self._estimator(first.unroll_length, first.horizon)

    def _estimator(self, unroll_length: int, horizon: int) -> GradientEstimator:
        return make_estimator(self.config, self.train_task, self.lopt, unroll_length, horizon)

    def meta_step(self, unroll_length: int, horizon: int, imitate: bool = False):
        """The jitted meta-iteration for truncations of ``unroll_length`` of runs of ``horizon``;
        with ``imitate``, the imitation step (its optimizer is :attr:`imitation_optimizer` when
        set, else the meta-optimizer)."""
        cache_key = (unroll_length, horizon, imitate)
        if cache_key not in self._meta_steps:
            estimator = self._estimator(unroll_length, horizon)
            if imitate:
                step = make_meta_step(estimator.imitation_grad, self.imitation_optimizer or self.meta_optimizer)
            else:
                step = make_meta_step(estimator.grad, self.meta_optimizer)
            self._meta_steps[cache_key] = step
        return self._meta_steps[cache_key]

    def _final_losses(self, num_steps: int):
        if num_steps not in self._validations:
            config, task, lopt = self.config, self.task, self.lopt
            key = jax.random.fold_in(jax.random.PRNGKey(config.seed), _VALIDATION)
            insts, params, keys = draw_problems(task, key, config.evaluation_epochs)

            @jax.jit
            def final_losses(theta):
                tx = lopt.transform(theta)
                run = lambda i, p, k: trajectory(task, tx, i, p, k, num_steps)[0][-1]
                return jax.vmap(run)(insts, params, keys)

            self._validations[num_steps] = final_losses
        return self._validations[num_steps]

    def validate(self, theta, num_steps: int | None = None) -> float:
        """Score of ``theta`` on the fixed validation instances after ``num_steps`` steps
        (default: the first period's validation horizon, ``num_steps`` for ``simple``)."""
        steps = num_steps or plan(self.config, 0, Stage(0, 0)).validation_steps
        return validation_score(np.asarray(self._final_losses(steps)(theta)), self.config.log_objective)

    def _record(self, history: list, event: dict) -> None:
        history.append(event)
        if self.save_path is not None:
            with open(self.save_path / METRICS_FILE, "a") as f:
                f.write(json.dumps(event) + "\n")

    def _fresh_progress(self) -> Progress:
        """Epoch 0 of the run: initial theta, meta-optimizer state and population states."""
        seed_key = jax.random.PRNGKey(self.config.seed)
        theta = self.lopt.init(jax.random.fold_in(seed_key, _THETA))
        states = self.estimator.init_states(
            theta, jax.random.fold_in(seed_key, _TRAIN), self.config.n_samplings
        )
        imitation_opt_state = self.imitation_optimizer.init(theta) if self.imitation_optimizer else optax.EmptyState()
        return Progress(theta, self.meta_optimizer.init(theta), imitation_opt_state, states, theta, float("inf"),
                        0, 0, 0, 0, 0)

    def _start(self, resume: bool) -> tuple[Progress, list]:
        """The progress and history to continue from: a fresh run, or the last checkpoint."""
        fresh = self._fresh_progress()
        if self.save_path is None:
            return fresh, []
        self.save_path.mkdir(parents=True, exist_ok=True)
        fingerprint = config_fingerprint(self.config.to_dict())
        progress = load_progress(self.save_path, fresh, fingerprint) if resume else None
        if progress is None:  # a new run: nothing of an earlier one may leak into it
            for old in checkpoint_files(self.save_path):
                old.unlink()
            atomic_write(self.save_path / "config.json", json.dumps(self.config.to_dict(), indent=2) + "\n")
            atomic_write(self.save_path / METRICS_FILE, "")
            return fresh, []
        metrics = self.save_path / METRICS_FILE
        lines = metrics.read_text().splitlines()[: progress.records] if metrics.is_file() else []
        atomic_write(metrics, "".join(line + "\n" for line in lines))  # drop what came after the checkpoint
        return progress, [json.loads(line) for line in lines]

    def train(self, progress: bool = True, resume: bool = False) -> TrainResult:
        """Runs meta-training to ``num_epochs`` epochs; returns the best optimizer found.

        Epochs are grouped in periods of ``evaluation_period``, each planned by the strategy
        (:mod:`l2o.meta.strategies`) and ended by a validation. With a ``save_path``, a
        checkpoint is written at every log line (every ``log_period`` epochs). With ``resume``,
        training continues from the last one and ends bit-for-bit where the uninterrupted run
        would have (on CPU).
        """
        config = self.config
        state, history = self._start(resume)
        fingerprint = config_fingerprint(config.to_dict())
        estimator_key = jax.random.fold_in(jax.random.PRNGKey(config.seed), _ESTIMATOR)
        theta, meta_opt_state, states = state.theta, state.meta_opt_state, state.states
        imitation_opt_state = state.imitation_opt_state
        best_theta, best_score, iteration = state.best_theta, state.best_score, state.iteration
        stage = Stage(state.stage, state.stage_periods)
        mesh = population_mesh(population_size(states))
        if mesh is not None:
            theta, meta_opt_state, imitation_opt_state = replicate((theta, meta_opt_state, imitation_opt_state), mesh)
            states = shard_population(states, mesh)
        if state.epoch == 0:
            best_score = self.validate(theta, plan(config, 0, stage).validation_steps)
            self._record(history, {"epoch": 0, "validation": best_score})
            if self.save_path is not None:
                save_optimizer(self.save_path / "best", self.lopt, best_theta, epoch=0, validation=best_score)

        start = time.perf_counter()
        bar = tqdm(total=config.num_epochs, initial=state.epoch, disable=not progress, desc="meta-training",
                   unit="epoch", dynamic_ncols=True, bar_format="{l_bar}{bar}| {n:.1f}/{total} epochs "
                   "[{elapsed}<{remaining}{postfix}]")
        window: list = []
        for epoch in range(state.epoch + 1, config.num_epochs + 1):
            period = (epoch - 1) // config.evaluation_period
            current = plan(config, period, stage)
            iterations = epoch_iterations(config, current, self.task.steps_per_epoch)
            for _ in range(iterations):
                key = jax.random.fold_in(estimator_key, iteration)
                if np.random.default_rng([config.seed, _IMITATION, iteration]).random() < current.p_teacher:
                    step = self.meta_step(current.unroll_length, current.horizon, imitate=True)
                    if self.imitation_optimizer is None:
                        theta, meta_opt_state, states, metrics = step(theta, meta_opt_state, states, key)
                    else:
                        theta, imitation_opt_state, states, metrics = step(theta, imitation_opt_state, states, key)
                    metrics = {"imitation_loss": metrics.pop("meta_loss"), **metrics}
                else:
                    step = self.meta_step(current.unroll_length, current.horizon)
                    theta, meta_opt_state, states, metrics = step(theta, meta_opt_state, states, key)
                window.append(metrics)
                iteration += 1
                bar.update(1 / iterations)
            if epoch % config.log_period == 0 or epoch == config.num_epochs:
                names = dict.fromkeys(name for m in window for name in m)
                means = {name: float(np.mean([m[name] for m in window if name in m])) for name in names}
                self._record(history, {"epoch": epoch, "seconds": time.perf_counter() - start,
                                       "unroll_length": current.unroll_length, "horizon": current.horizon, **means})
                loss_name = "meta_loss" if "meta_loss" in means else "imitation_loss"
                bar.set_postfix({loss_name: f"{means[loss_name]:.3g}", "best": f"{best_score:.3f}"})
                window = []
            if epoch % config.evaluation_period == 0 or epoch == config.num_epochs:
                score = self.validate(theta, current.validation_steps)
                self._record(history, {"epoch": epoch, "validation": score, "validation_steps": current.validation_steps})
                improved = score < best_score
                if improved:
                    best_theta, best_score = theta, score
                    if self.save_path is not None:
                        save_optimizer(self.save_path / "best", self.lopt, theta, epoch=epoch, validation=score,
                                       validation_steps=current.validation_steps)
                stage, changed = after_validation(config, stage, improved)
                if changed:  # the validation horizon grows: earlier scores are not comparable
                    best_score = float("inf")
                    self._record(history, {"epoch": epoch, "stage": stage.index})
                bar.set_postfix(best=f"{best_score:.3f}")
            if self.save_path is not None and not window:  # after each log line
                save_progress(
                    self.save_path,
                    Progress(theta, meta_opt_state, imitation_opt_state, states, best_theta, best_score, epoch,
                             iteration, len(history), stage.index, stage.periods),
                    fingerprint,
                )
        bar.close()
        seconds = time.perf_counter() - start
        if self.save_path is not None:
            save_optimizer(self.save_path / "last", self.lopt, theta, epoch=config.num_epochs)
        return TrainResult(best_theta, best_score, theta, history, iteration, seconds)
