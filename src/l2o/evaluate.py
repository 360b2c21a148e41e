"""Fair evaluation: tune each baseline's learning rate on tuning instances, then run every
optimizer on the same, disjoint test instances and summarize the loss curves."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from l2o.io import read_arrays, write_arrays
from l2o.meta.unroll import advance, trajectory, trajectory_keys
from l2o.metrics import log10_mean, mean_log10
from l2o.optimizers.baselines import DEFAULT_LEARNING_RATE_GRID
from l2o.tasks.base import Task, draw_problems

# Randomness streams of an evaluation seed: tuning and test instances never share a key.
_TUNING, _TEST = 10, 11


@dataclasses.dataclass(frozen=True)
class Tuned:
    """A hand-designed optimizer whose learning rate is chosen by grid search.

    Attributes:
      make: ``learning_rate -> optax transformation`` (accepts a traced learning rate).
      grid: learning rates tried.
    """

    make: Callable[[float], optax.GradientTransformation]
    grid: Sequence[float] = DEFAULT_LEARNING_RATE_GRID


@dataclasses.dataclass(frozen=True)
class Fixed:
    """A hand-designed optimizer run at a given learning rate, without tuning.

    Attributes:
      make: ``learning_rate -> optax transformation``.
      learning_rate: the rate it runs at (reported as given, not tuned).
    """

    make: Callable[[float], optax.GradientTransformation]
    learning_rate: float


@dataclasses.dataclass
class OptimizerResult:
    """One optimizer on the test instances.

    Attributes:
      losses: training loss per instance and step, shape ``(num_instances, num_steps + 1)``.
      learning_rate: the tuned (or given) learning rate, None for learned optimizers and
        ready transformations.
      tuning: ``{learning_rate: tuning score}`` for every grid point, if tuned (``None`` for a
        :class:`Fixed` rate).
      test: the task's held-out metrics of the final parameters, ``{name: (num_instances,)}``
        (e.g. ``test_loss``, ``test_accuracy``), for tasks that have them.
    """

    losses: np.ndarray
    learning_rate: float | None = None
    tuning: dict | None = None
    test: dict[str, np.ndarray] | None = None

    @property
    def final(self) -> np.ndarray:
        return self.losses[:, -1]

    @property
    def log10_mean_final(self) -> float:
        """DeepMind's metric: log10 of the mean final loss over test instances."""
        return log10_mean(self.final)

    @property
    def mean_log10_final(self) -> float:
        """The notebook's metric: mean over test instances of log10 final loss."""
        return mean_log10(self.final)


@dataclasses.dataclass
class Evaluation:
    """Results of :func:`evaluate`, one entry per optimizer name, plus the setting."""

    results: dict[str, OptimizerResult]
    problem: str
    num_steps: int
    num_instances: int
    num_tuning_instances: int
    seed: int


def _stored_runs(partial: Path | None, num_steps: int, num_problems: int) -> dict:
    """What :func:`run_trajectories` stored at ``partial`` for runs of these sizes, else ``{}``."""
    stored = read_arrays(partial) or {}
    if stored.get("num_steps") != num_steps or stored.get("num_problems") != num_problems:
        return {}
    return stored


def _restored_carry(stored: dict, first: int, carry) -> tuple[Any, int, list]:
    """The stored position of the batch starting at run ``first`` (its carry, step and losses so
    far) when it matches ``carry``'s structure, shapes and dtypes; else ``carry`` at step 0."""
    leaves, treedef = jax.tree.flatten(carry)
    saved = [stored.get(f"carry_{i}") for i in range(len(leaves))]
    if stored.get("first") != first or not stored.get("step") or any(
            s is None or s.shape != leaf.shape or s.dtype != leaf.dtype for s, leaf in zip(saved, leaves)):
        return carry, 0, []
    return jax.tree.unflatten(treedef, [jnp.asarray(s) for s in saved]), int(stored["step"]), [stored["losses"]]


def _store_runs(partial: Path | None, num_steps: int, num_problems: int, curves: list, tests: list,
                first: int = 0, step: int = 0, pieces: Sequence = (), carry=None) -> None:
    """Stores at ``partial`` the finished runs (``curves``, ``tests``) and where the batch from run
    ``first`` stands (``carry`` after ``step`` steps, with its losses ``pieces``); a carry of
    other than plain arrays (typed PRNG keys) is not stored, so that batch starts again."""
    if partial is None:
        return
    arrays = {"num_steps": num_steps, "num_problems": num_problems, "first": first, "step": 0}
    if curves:
        arrays["curves"] = np.concatenate(curves)
        arrays.update({f"test_{name}": np.concatenate([t[name] for t in tests]) for name in tests[0]})
    leaves = jax.tree.leaves(carry)
    if step and not any(jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key) for leaf in leaves):
        arrays.update(step=step, losses=np.concatenate(pieces, axis=1),
                      **{f"carry_{i}": np.asarray(leaf) for i, leaf in enumerate(leaves)})
    write_arrays(partial, **arrays)


def run_trajectories(
    task: Task,
    tx: optax.GradientTransformation,
    problems,
    num_steps: int,
    parallel_runs: int = 256,
    progress: str | None = None,
    segments: int = 20,
    partial: Path | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray] | None]:
    """Loss curves of ``tx`` on stacked problems ``(insts, params, keys)``, and the task's
    held-out metrics of the final parameters.

    At most ``parallel_runs`` runs are vmapped at once (bounds memory on large models). With
    ``progress`` (a label) or ``partial``, the runs advance in ``segments`` compiled calls of
    ``num_steps / segments`` steps each, with the same minibatches and the same numbers as in
    one call: ``progress`` shows a bar over steps; ``partial`` (a path) is where the runs'
    position is stored after every segment, so that a later call with the same arguments
    continues from it (an LSTM optimizer's runs on a convnet take up to an hour); the file is
    removed when the runs are done.

    Returns:
      ``(losses (num_instances, num_steps + 1), {metric: (num_instances,)} or None)``.
    """
    segmented = progress is not None or partial is not None
    segment = max(1, -(-num_steps // segments) if segmented else num_steps)

    # The task is an argument, so its dataset is an input of the program, not a constant.
    @jax.jit
    def begin(params, keys):
        return jax.vmap(lambda p: (p, tx.init(p)))(params), jax.vmap(lambda k: trajectory_keys(k, num_steps))(keys)

    @jax.jit
    def advance_all(task, insts, carry, keys):
        return jax.vmap(lambda inst, carry, keys: advance(task, tx, inst, *carry, keys))(insts, carry, keys)

    @jax.jit
    def finish_all(task, insts, params, keys):
        def finish(inst, params, key):
            test = task.test_metrics(params, inst) if task.test_metrics is not None else {}
            return task.loss(params, inst, key), test

        return jax.vmap(finish)(insts, params, keys)

    num_problems = problems[2].shape[0]
    stored = _stored_runs(partial, num_steps, num_problems)
    curves = [stored["curves"]] if "curves" in stored else []
    tests = [{name[5:]: values for name, values in stored.items() if name.startswith("test_")}] if curves else []
    done = len(curves[0]) if curves else 0
    with tqdm(total=num_problems * num_steps, initial=done * num_steps, disable=progress is None, desc=progress,
              unit="step", unit_scale=True, leave=False) as bar:
        for first in range(done, num_problems, parallel_runs):
            insts, params, keys = jax.tree.map(lambda a, first=first: a[first:first + parallel_runs], problems)
            carry, step_keys = begin(params, keys)
            carry, start, pieces = _restored_carry(stored, first, carry)
            bar.update(start * step_keys.shape[0])
            for step in range(start, num_steps, segment):
                carry, losses = advance_all(task, insts, carry, step_keys[:, step:min(step + segment, num_steps)])
                pieces.append(np.asarray(losses))
                bar.update(losses.shape[0] * losses.shape[1])
                _store_runs(partial, num_steps, num_problems, curves, tests, first, step + losses.shape[1], pieces,
                            carry)
            final, test = finish_all(task, insts, carry[0], step_keys[:, -1])
            curves.append(np.concatenate([*pieces, np.asarray(final)[:, None]], axis=1))
            tests.append({name: np.asarray(values) for name, values in test.items()})
            _store_runs(partial, num_steps, num_problems, curves, tests)
    if partial is not None:
        partial.unlink(missing_ok=True)
    return np.concatenate(curves), ({name: np.concatenate([t[name] for t in tests]) for name in tests[0]} or None)


def tune_learning_rate(
    task: Task, candidate: Tuned, problems, num_steps: int, parallel_runs: int = 256
) -> tuple[float, dict[float, float]]:
    """Grid search: the learning rate with the lowest log10 mean final loss on ``problems``.

    The grid runs in one compiled computation, ``parallel_runs`` runs vmapped at a time.
    Returns the best learning rate and the score of every grid point (``inf`` for runs that
    diverged).
    """
    grid = jnp.asarray(candidate.grid, jnp.float32)
    num_problems = problems[2].shape[0]
    grid_batch = max(1, parallel_runs // num_problems)

    def grid_final_losses(task, problems, grid):
        def final_losses(learning_rate):
            tx = candidate.make(learning_rate)
            run = lambda problem: trajectory(task, tx, *problem, num_steps)[0][-1]
            return jax.lax.map(run, problems, batch_size=min(parallel_runs, num_problems))

        return jax.lax.map(final_losses, grid, batch_size=grid_batch)

    finals = np.asarray(jax.jit(grid_final_losses)(task, problems, grid))
    scores = {float(lr): log10_mean(row) for lr, row in zip(candidate.grid, finals)}
    best = min(scores, key=lambda lr: (scores[lr], lr))
    return best, scores


def evaluate(
    task: Task,
    optimizers: Mapping[str, optax.GradientTransformation | Tuned | Fixed],
    *,
    num_steps: int = 100,
    num_instances: int = 100,
    num_tuning_instances: int = 50,
    seed: int = 0,
    parallel_runs: int = 256,
    progress: bool = False,
) -> Evaluation:
    """Runs every optimizer on the same ``num_instances`` test instances.

    Args:
      task: the task family.
      optimizers: name -> a ready optax transformation (learned or fixed), :class:`Fixed` (a
        baseline at a given learning rate, reported with it) or :class:`Tuned` (learning rate
        tuned first on ``num_tuning_instances`` instances drawn from a key stream disjoint from
        the test instances').
      num_steps: inner steps per run.
      seed: selects the tuning and test instances.
      parallel_runs: runs vmapped at once; lower it when a large model runs out of memory.
      progress: show a progress bar over optimizers.
    """
    seed_key = jax.random.PRNGKey(seed)
    test = draw_problems(task, jax.random.fold_in(seed_key, _TEST), num_instances)
    tuning = draw_problems(task, jax.random.fold_in(seed_key, _TUNING), num_tuning_instances)
    results = {}
    bar = tqdm(optimizers.items(), disable=not progress, desc="evaluating", unit="optimizer")
    for name, candidate in bar:
        bar.set_postfix_str(name)
        if isinstance(candidate, Tuned):
            lr, scores = tune_learning_rate(task, candidate, tuning, num_steps, parallel_runs)
            losses, metrics = run_trajectories(task, candidate.make(lr), test, num_steps, parallel_runs)
            results[name] = OptimizerResult(losses, lr, scores, metrics)
        elif isinstance(candidate, Fixed):
            losses, metrics = run_trajectories(task, candidate.make(candidate.learning_rate), test, num_steps,
                                               parallel_runs)
            results[name] = OptimizerResult(losses, candidate.learning_rate, test=metrics)
        else:
            losses, metrics = run_trajectories(task, candidate, test, num_steps, parallel_runs)
            results[name] = OptimizerResult(losses, test=metrics)
    return Evaluation(results, task.name, num_steps, num_instances, num_tuning_instances, seed)
