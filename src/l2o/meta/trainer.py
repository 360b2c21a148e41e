"""The outer loop: meta-optimizer, validation, best-so-far selection, metrics, progress."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import numpy as np
import optax
from tqdm.auto import tqdm

from l2o import distributed
from l2o.errors import L2OError
from l2o.io import append_line, atomic_write, json_text, write_json
from l2o.meta.estimator import GradientEstimator, make_meta_step
from l2o.meta.estimators import make_estimator, make_teacher
from l2o.meta.losses import MetaLoss
from l2o.meta.run_checkpoints import Progress, load_progress, save_progress
from l2o.meta.sharding import population_mesh, population_size, replicate, shard_population
from l2o.meta.strategies import FIRST_STAGE, Plan, Stage, epoch_iterations, make_strategy, plan
from l2o.meta.validation import Validation
from l2o.optimizers import get_learned
from l2o.run_directory import RunDirectory
from l2o.saved_optimizer import OPTIMIZER_FILE, save_optimizer
from l2o.tasks import get_task, randomly_scaled, reparameterized

if TYPE_CHECKING:
    from l2o.config import ProblemConfig, TrainConfig
    from l2o.config_sections import MetaOptimizerConfig

# Streams of randomness derived from the run's seed; evaluation uses other streams.
_THETA, _TRAIN, _VALIDATION, _ESTIMATOR, _IMITATION = 0, 1, 2, 3, 4


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


def epoch_learning_rate(meta: MetaOptimizerConfig, epoch: int, num_epochs: int) -> float:
    """The meta learning rate of epoch ``epoch`` (1-based) of ``num_epochs``: ``meta.learning_rate``
    throughout, or with ``schedule`` cosine ``learning_rate * (f + (1 - f) * (1 + cos(pi * (epoch - 1)
    / (num_epochs - 1))) / 2)``, ``f = final_fraction``: the full rate in the first epoch, ``f`` of it
    in the last."""
    if meta.schedule == "constant" or num_epochs == 1:
        return meta.learning_rate
    f = meta.final_fraction
    return meta.learning_rate * (f + (1 - f) * (1 + math.cos(math.pi * (epoch - 1) / (num_epochs - 1))) / 2)


def _meta_optimizer(meta: MetaOptimizerConfig) -> optax.GradientTransformation:
    """Adam (its learning rate a state entry with a schedule, set each epoch by
    :meth:`MetaTrainer._at_epoch_learning_rate`) after the global-norm clip; a non-finite
    meta-gradient (a diverged inner run) skips the update instead of poisoning theta and the moments."""
    adam = (optax.adam if meta.schedule == "constant" else optax.inject_hyperparams(optax.adam))(
        learning_rate=meta.learning_rate, b1=meta.betas[0], b2=meta.betas[1])
    if meta.clip_norm > 0:
        adam = optax.chain(optax.clip_by_global_norm(meta.clip_norm), adam)
    return optax.apply_if_finite(adam, max_consecutive_errors=100)


def _problem_key(key: jax.Array, problem: int) -> jax.Array:
    """The key of problem number ``problem`` (the first problem's is ``key`` itself)."""
    return key if problem == 0 else jax.random.fold_in(key, problem)


def _training_task(task, problem: ProblemConfig):
    """``task`` as meta-training sees it: randomly scaled and reparameterized when configured."""
    if problem.random_scaling > 0:
        task = randomly_scaled(task, problem.random_scaling)
    if problem.augmentation is not None:
        task = reparameterized(task, problem.augmentation.scale_range, problem.augmentation.levels)
    return task


class MetaTrainer:
    """Meta-trains a learned optimizer on a population of task instances.

    With several devices, the population is sharded over as many of them as divide its size
    (:mod:`l2o.meta.sharding`); the results equal the single-device ones up to float rounding.
    With several processes (:func:`l2o.distributed.connect`), every process constructs it with
    the same arguments; process 0 alone writes ``save_path``, and every process continues from
    what process 0 read there.

    Args:
      config: the run's configuration.
      save_path: run directory; when given, ``config.json``, ``metrics.jsonl``, ``best/`` (best
        optimizer by validation), ``last/`` (the final one) and ``checkpoints/`` (what
        :meth:`train` with ``resume=True`` continues from) are written there.
      tasks: task families to meta-train on instead of the ones the configuration names (your
        own :class:`l2o.tasks.Task`, say), one per problem of ``config.problems()``; a run
        trained on them resumes only through this API, given the same tasks again.
    """

    def __init__(self, config: TrainConfig, save_path: str | Path | None = None, tasks=None):
        self.config = config
        self.save_path = Path(save_path) if save_path is not None else None
        # Whether checkpoints are written (process 0 decides for all: gathering them is collective),
        # and the run directory, held by the process that writes it.
        self._checkpoints = bool(distributed.from_writer(save_path is not None))
        self.run_directory = RunDirectory(save_path) if save_path is not None and distributed.is_writer() else None
        # Every problem family meta-trained on (``config.problem`` first, the one evaluation uses),
        # and the tasks training sees; validation always uses the unscaled ones.
        if tasks is not None and len(tasks) != len(config.problems()):
            raise L2OError(f"{len(tasks)} tasks given for the configuration's {len(config.problems())} problems; "
                           "give one task per problem (extra_problems adds problems)")
        self.tasks = tuple(tasks) if tasks is not None else tuple(
            get_task(name, **options) for name, options in config.problems())
        self.task = self.tasks[0]
        self.custom_task_names = [task.name for task in tasks] if tasks is not None else None
        self.train_tasks = tuple(_training_task(task, config.problem) for task in self.tasks)
        self.lopt = get_learned(config.optimizer.name, **config.optimizer.options)
        self.objective = MetaLoss(**config.meta_loss.model_dump())
        self.strategy = make_strategy(config.strategy)
        self.meta_optimizer = _meta_optimizer(config.meta_optimizer)
        # Imitation steps use the meta-optimizer, or their own Adam (Keras L2O's imitation_optimizer).
        self.imitation_optimizer = None
        if config.imitation.learning_rate is not None:
            self.imitation_optimizer = optax.apply_if_finite(
                optax.adam(config.imitation.learning_rate), max_consecutive_errors=100)
        # Bad teacher options fail here, not when imitation starts.
        self.teachers = tuple(make_teacher(spec) for spec in config.imitation.teachers)
        # Meta-iteration i draws its randomness from fold_in(this key, i).
        self._estimator_key = jax.random.fold_in(jax.random.PRNGKey(config.run.seed), _ESTIMATOR)
        # One compiled meta-step per (problem, unroll length, horizon).
        self._meta_steps: dict = {}
        validation_key = jax.random.fold_in(jax.random.PRNGKey(config.run.seed), _VALIDATION)
        validation_tasks = tuple(get_task(problem["name"], **problem["options"])
                                 for problem in config.problem.validation) or self.tasks
        keys = [_problem_key(validation_key, problem) for problem in range(len(validation_tasks))]
        self.validation = Validation(validation_tasks, self.lopt, keys, config.run.validation_instances,
                                     config.meta_loss.log_objective)

    def _estimator(self, unroll_length: int, horizon: int, problem: int = 0) -> GradientEstimator:
        strategy = self.config.strategy
        return make_estimator(self.config.estimator, self.train_tasks[problem], self.lopt, unroll_length=unroll_length,
                              horizon=horizon, objective=self.objective, teachers=self.teachers,
                              min_length=strategy.min_horizon, stagger=strategy.stagger)

    def plan(self, period: int, stage: Stage = FIRST_STAGE) -> Plan:
        """What ``period`` (0-based) trains on at curriculum position ``stage``."""
        return plan(self.config.strategy, self.config.imitation, self.config.run.seed, period, stage)

    def meta_step(self, unroll_length: int, horizon: int, imitate: bool = False, problem: int = 0):
        """The jitted meta-iteration on problem number ``problem`` for truncations of
        ``unroll_length`` of runs of ``horizon``; with ``imitate``, the imitation step (its
        optimizer is :attr:`imitation_optimizer` when set, else the meta-optimizer)."""
        cache_key = (problem, unroll_length, horizon, imitate)
        if cache_key not in self._meta_steps:
            estimator = self._estimator(unroll_length, horizon, problem)
            optimizer = (self.imitation_optimizer or self.meta_optimizer) if imitate else self.meta_optimizer
            self._meta_steps[cache_key] = make_meta_step(estimator, optimizer, imitate)
        return self._meta_steps[cache_key]

    def validation_scores(self, theta, num_steps: int | None = None) -> list[float]:
        """Score of ``theta`` on each problem's fixed validation instances after ``num_steps``
        steps (default: the first period's validation horizon, ``num_steps`` for ``simple``)."""
        return self.validation.scores(theta, num_steps or self.plan(0).validation_steps)

    def validate(self, theta, num_steps: int | None = None) -> float:
        """The mean over the problems of :meth:`validation_scores` (lower is better)."""
        return float(np.mean(self.validation_scores(theta, num_steps)))

    def _validation_record(self, history: list, epoch: int, theta, num_steps: int) -> float:
        """Validates ``theta`` at ``num_steps`` steps, records it; returns the (mean) score."""
        scores = self.validation_scores(theta, num_steps)
        event = {"epoch": epoch, "validation": float(np.mean(scores)), "validation_steps": num_steps}
        if len(scores) > 1:
            event["validation_by_problem"] = scores
        self._record(history, event)
        return event["validation"]

    def _record(self, history: list, event: dict) -> None:
        history.append(event)
        if self.run_directory is not None:
            append_line(self.run_directory.metrics, json_text(event))

    def initial_theta(self) -> Any:
        """The run's meta-parameters at epoch 0, drawn from ``run.seed`` (what training starts from)."""
        return jax.jit(self.lopt.init)(jax.random.fold_in(jax.random.PRNGKey(self.config.run.seed), _THETA))

    def initial_progress(self) -> Progress:
        """Epoch 0 of the run, what :meth:`train` starts from without a checkpoint: the initial
        theta (:meth:`initial_theta`), the meta-optimizers' states and every problem's population
        of inner runs, on one device (:meth:`place_on_devices` spreads it as training does)."""
        seed_key = jax.random.PRNGKey(self.config.run.seed)
        theta = self.initial_theta()
        first = self.plan(0)
        states = [
            self._estimator(first.unroll_length, first.horizon, problem).init_states(
                theta, _problem_key(jax.random.fold_in(seed_key, _TRAIN), problem), self.config.run.population)
            for problem in range(len(self.tasks))
        ]
        imitation_opt_state = self.imitation_optimizer.init(theta) if self.imitation_optimizer else optax.EmptyState()
        return Progress(theta, self.meta_optimizer.init(theta), imitation_opt_state, states[0], theta, float("inf"),
                        0, 0, 0, 0, 0, tuple(states[1:]))

    def _save_optimizer(self, directory: Path, theta, epoch: int, **info) -> None:
        """Saves ``theta`` with what it was trained on (:class:`l2o.saved_optimizer.TrainingInfo`)."""
        trained_on = self.custom_task_names or [name for name, _ in self.config.problems()]
        save_optimizer(directory, self.lopt, distributed.to_host(theta), epoch=epoch,
                       num_epochs=self.config.run.num_epochs, trained_on=trained_on,
                       custom_tasks=self.custom_task_names is not None, num_steps=self.config.strategy.num_steps,
                       **info)

    def _start(self, resume: bool, overwrite: bool) -> tuple[Progress, list]:
        """The progress and history to continue from: a fresh run, or the last checkpoint.

        A fresh run first removes whatever an earlier run left in the directory (refused unless
        ``overwrite``), then writes its configuration.
        """
        fresh = self.initial_progress()
        run = self.run_directory
        if run is None:
            return fresh, []
        recorded = run.custom_task_names()
        if resume and recorded != self.custom_task_names:
            trained = f"your tasks {', '.join(recorded)}" if recorded else "the problems its config.json names"
            given = f"tasks {', '.join(self.custom_task_names)}" if self.custom_task_names else "those problems"
            raise L2OError(f"{run.path} was meta-trained on {trained}, not on {given}; resume it with the same tasks")
        progress = load_progress(run.path, fresh, self.config) if resume else None
        if progress is None:  # a new run: nothing of an earlier one may leak into it
            if not resume and not overwrite and run.holds_run():
                raise L2OError(f"{run.path} already holds a run; continue it with `l2o resume {run.path}`, "
                               "choose a new directory or pass --overwrite")
            run.clear()
            write_json(run.config, self.config.to_dict())
            run.record_custom_tasks(self.custom_task_names)
            atomic_write(run.metrics, "")
            return fresh, []
        lines = run.metrics.read_text().splitlines()[: progress.records] if run.metrics.is_file() else []
        atomic_write(run.metrics, "".join(line + "\n" for line in lines))  # drop what came after the checkpoint
        if not (run.best / OPTIMIZER_FILE).is_file():  # an overwrite interrupted after removing it
            self._save_optimizer(run.best, progress.best_theta, progress.epoch, validation=progress.best_score)
        return progress, [json.loads(line) for line in lines]

    def train(self, progress: bool = True, resume: bool = False, overwrite: bool = True) -> TrainResult:
        """Runs meta-training to ``num_epochs`` epochs; returns the best optimizer found.

        Epochs are grouped in periods of ``evaluation_period``, each planned by the strategy
        (:mod:`l2o.meta.strategies`) and ended by a validation. With a ``save_path``, a
        checkpoint is written at every log line (every ``log_period`` epochs), and the run
        directory is owned by this process while it trains: another process training into it
        gets a one-line :class:`L2OError`. With ``resume``, training continues from the last
        checkpoint and ends bit-for-bit where the uninterrupted run would have (on CPU); without
        it, a directory that holds a run is replaced only with ``overwrite``.
        """
        if self.run_directory is None:
            return self._train(progress, resume, overwrite)
        with self.run_directory.owned():
            return self._train(progress, resume, overwrite)

    def _train(self, progress: bool, resume: bool, overwrite: bool) -> TrainResult:
        """The outer loop: per epoch, the strategy's plan, the meta-iterations, then a log line,
        a validation and a checkpoint when they are due."""
        run = self.config.run
        state, history = self._start(resume, overwrite)
        state = self.place_on_devices(distributed.from_writer(state))
        if state.epoch == 0:
            state = self._validate(state, history, 0, self.plan(0))
        start = time.perf_counter()
        window: list = []
        with tqdm(total=run.num_epochs, initial=state.epoch, disable=not progress, desc="meta-training",
                  unit="epoch", dynamic_ncols=True, bar_format="{l_bar}{bar}| {n:.2f}/{total} epochs "
                  "[{elapsed}<{remaining}{postfix}]") as bar:  # closed (its line ended) however the loop ends
            for epoch in range(state.epoch + 1, run.num_epochs + 1):
                current = self.plan((epoch - 1) // run.evaluation_period, Stage(state.stage, state.stage_periods))
                state = self._train_epoch(self._at_epoch_learning_rate(state, epoch), current, epoch, window, bar)
                if epoch % run.log_period == 0 or epoch == run.num_epochs:
                    self._log(history, window, epoch, current, time.perf_counter() - start, state.best_score, bar)
                    window = []
                if epoch % run.evaluation_period == 0 or epoch == run.num_epochs:
                    state = self._validate(state, history, epoch, current)
                    bar.set_postfix(best=f"{state.best_score:.3f}")
                state = state._replace(epoch=epoch, records=len(history))
                if self._checkpoints and not window:  # after each log line
                    self._checkpoint(state)
        seconds = time.perf_counter() - start
        if self.run_directory is not None:
            self._save_optimizer(self.run_directory.last, state.theta, run.num_epochs)
        return TrainResult(state.best_theta, state.best_score, state.theta, history, state.iteration, seconds)

    def _checkpoint(self, state: Progress) -> None:
        """Writes ``state`` as the run's checkpoint; every process takes part in gathering it."""
        host_state = distributed.to_host(state)
        if self.run_directory is not None:
            save_progress(self.run_directory.path, host_state, self.config)

    def place_on_devices(self, state: Progress) -> Progress:
        """With several devices, the population states sharded over them and theta and the
        optimizer states replicated (:mod:`l2o.meta.sharding`); else ``state`` unchanged."""
        mesh = population_mesh(population_size(state.states))
        if mesh is None:
            return state
        theta, meta_opt_state, imitation_opt_state = replicate(
            (state.theta, state.meta_opt_state, state.imitation_opt_state), mesh)
        return state._replace(theta=theta, meta_opt_state=meta_opt_state, imitation_opt_state=imitation_opt_state,
                              states=shard_population(state.states, mesh),
                              extra_states=tuple(shard_population(s, mesh) for s in state.extra_states))

    def _at_epoch_learning_rate(self, state: Progress, epoch: int) -> Progress:
        """``state`` with the meta learning rate of ``epoch`` (:func:`epoch_learning_rate`) in the
        meta-optimizer's state, when it follows a schedule."""
        meta = self.config.meta_optimizer
        if meta.schedule == "constant":
            return state
        rate = np.float32(epoch_learning_rate(meta, epoch, self.config.run.num_epochs))
        return state._replace(meta_opt_state=optax.tree_utils.tree_set(state.meta_opt_state, learning_rate=rate))

    def _train_epoch(self, state: Progress, current, epoch: int, window: list, bar) -> Progress:
        """One epoch: each problem in turn for its share (Keras L2O's order); the metrics of
        every meta-iteration are appended to ``window``."""
        schedule = [(problem, epoch_iterations(self.config.strategy, current, task.steps_per_epoch))
                    for problem, task in enumerate(self.train_tasks)]
        epoch_length = sum(count for _, count in schedule)
        for problem, count in schedule:
            for _ in range(count):
                state, metrics = self._meta_iteration(state, current, problem)
                window.append(metrics)
                bar.update(min(1 / epoch_length, epoch - bar.n))  # float fractions may overshoot
        bar.update(epoch - bar.n)  # whole epochs exactly
        return state

    def _meta_iteration(self, state: Progress, current, problem: int) -> tuple[Progress, dict]:
        """One meta-step on ``problem``'s population: an imitation step with probability
        ``current.p_teacher`` (a draw from the seed and the iteration), else a meta-gradient step."""
        key = jax.random.fold_in(self._estimator_key, state.iteration)
        draw = np.random.default_rng([self.config.run.seed, _IMITATION, state.iteration]).random()
        imitate = bool(draw < current.p_teacher)
        step = self.meta_step(current.unroll_length, current.horizon, imitate, problem)
        populations = [state.states, *state.extra_states]
        if imitate and self.imitation_optimizer is not None:
            theta, opt_state, populations[problem], metrics = step(
                state.theta, state.imitation_opt_state, populations[problem], key)
            state = state._replace(imitation_opt_state=opt_state)
        else:
            theta, opt_state, populations[problem], metrics = step(
                state.theta, state.meta_opt_state, populations[problem], key)
            state = state._replace(meta_opt_state=opt_state)
        if imitate:
            metrics = {"imitation_loss": metrics.pop("meta_loss"), **metrics}
        return state._replace(theta=theta, states=populations[0], extra_states=tuple(populations[1:]),
                              iteration=state.iteration + 1), metrics

    def _log(self, history: list, window: list, epoch: int, current, seconds: float, best_score: float, bar) -> None:
        """Records the means of the window's metrics (one log line) and shows them."""
        window = jax.device_get(window)
        names = dict.fromkeys(name for metrics in window for name in metrics)
        means = {name: float(np.mean([m[name] for m in window if name in m])) for name in names}
        meta = self.config.meta_optimizer
        scheduled = {} if meta.schedule == "constant" else {
            "meta_learning_rate": epoch_learning_rate(meta, epoch, self.config.run.num_epochs)}
        self._record(history, {"epoch": epoch, "seconds": seconds, "unroll_length": current.unroll_length,
                               "horizon": current.horizon, **scheduled, **means})
        loss_name = "meta_loss" if "meta_loss" in means else "imitation_loss"
        bar.set_postfix({loss_name: f"{means[loss_name]:.3g}", "best": f"{best_score:.3f}"})

    def _validate(self, state: Progress, history: list, epoch: int, current) -> Progress:
        """Validates theta; keeps (and saves) it as the best when it improves; moves the
        curriculum on. At epoch 0 the untrained theta is the first best."""
        score = self._validation_record(history, epoch, state.theta, current.validation_steps)
        improved = epoch == 0 or score < state.best_score
        if improved:
            state = state._replace(best_theta=state.theta if epoch else state.best_theta, best_score=score)
            if self.run_directory is not None:
                self._save_optimizer(self.run_directory.best, state.best_theta, epoch, validation=score,
                                     validation_steps=current.validation_steps)
        if epoch == 0:
            return state
        stage, changed = self.strategy.after_validation(Stage(state.stage, state.stage_periods), improved)
        state = state._replace(stage=stage.index, stage_periods=stage.periods)
        if changed:  # the validation horizon grows: earlier scores are not comparable
            self._record(history, {"epoch": epoch, "stage": stage.index})
            state = state._replace(best_score=float("inf"))
        return state
