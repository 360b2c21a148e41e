"""The field's benchmark protocol: any optimizer on fixed tasks, judged by its speedup over
learning-rate-tuned Adam (:mod:`l2o.benchmark_metrics` defines the metrics).

Per task, two disjoint sets of ``seeds`` instances (initializations and minibatch streams) are
drawn once: tuning instances and test instances. Adam runs at each of the 15 half-decade
learning rates of :data:`l2o.benchmark_metrics.ADAM_GRID` on the tuning instances for
``num_steps`` steps; the rate with the lowest mean smoothed loss at the budget is tuned Adam,
which then runs on the test instances for ``reference_multiple * num_steps`` steps, so that
speedups up to that multiple are measured. The optimizer and Adam at its default learning
rate (1e-3, what an untuned user runs) run on the test instances. Tuned Adam is the expensive
part: it is cached on disk (:func:`tuned_adam`), keyed by the task's definition, the settings
and l2o's version, and so is Adam at 1e-3 (:func:`default_adam`). A learned optimizer's own
runs can take hours per task too (an LSTM over every coordinate); given a folder and the
optimizer's identity, :func:`benchmark` keeps each task's result as it finishes, so that a
benchmark interrupted halfway continues where it stopped when run again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from l2o.benchmark_metrics import ADAM_GRID, iqm, iqm_interval, normalized_final_loss, smoothed, speedup
from l2o.errors import L2OError
from l2o.evaluate import run_trajectories
from l2o.io import fingerprint, read_arrays, write_arrays
from l2o.meta.unroll import trajectory
from l2o.optimizers.multiplier import with_learning_rate
from l2o.tasks import draw_problems, get_task
from l2o.tasks.fixed import FIXED_TASKS
from l2o.version import installed_version

# learned_optimization's fixed tasks, then the classic problems this project reproduces.
BENCHMARK_TASKS = (*FIXED_TASKS, "quadratic", "mnist")
# The benchmark's key streams for test and tuning instances (evaluation uses 10 and 11).
_TEST_INSTANCES, _TUNING_INSTANCES = 12, 13
CACHE_FORMAT = 2
# The folder of `l2o benchmark --out` where each task's result is kept until the report is written.
FINISHED_TASKS = "finished-tasks"


@dataclasses.dataclass(frozen=True)
class BenchmarkSettings:
    """How the benchmark runs.

    Attributes:
      num_steps: the budget: steps of every run judged.
      seeds: instances per task.
      reference_multiple: tuned Adam runs this many times the budget (the speedup's cap).
      window: steps of the trailing mean that smooths loss curves (default: 2.5% of the budget).
      parallel_runs: runs computed at once.
    """

    num_steps: int = 2000
    seeds: int = 5
    reference_multiple: int = 4
    window: int | None = None
    parallel_runs: int = 64

    def __post_init__(self):
        for name in ("num_steps", "seeds", "reference_multiple", "parallel_runs"):
            if getattr(self, name) < 1:
                raise L2OError(f"--{name} must be a positive integer, got {getattr(self, name)}")

    @property
    def smoothing(self) -> int:
        return self.window or max(1, self.num_steps // 40)


@dataclasses.dataclass
class TaskResult:
    """One task: the curves ``(seeds, steps + 1)`` and the per-seed metrics."""

    name: str
    curves: np.ndarray
    adam_default: np.ndarray
    tuned_adam: np.ndarray
    tuned_learning_rate: float
    speedup: np.ndarray
    normalized_final_loss: np.ndarray
    adam_default_speedup: np.ndarray
    adam_default_normalized_final_loss: np.ndarray


@dataclasses.dataclass
class BenchmarkResult:
    """Every task's :class:`TaskResult`, and the aggregate over tasks and seeds (``identity``:
    the optimizer's, as :func:`resolve_optimizer` gives it, when known)."""

    optimizer: str
    settings: BenchmarkSettings
    tasks: list[TaskResult]
    identity: str | None = None

    def aggregate(self, field: str) -> dict:
        """IQM and its 95% interval of a per-seed metric over all tasks and seeds."""
        values = np.stack([getattr(task, field) for task in self.tasks])
        return {"iqm": iqm(values), "ci95": list(iqm_interval(values))}


@dataclasses.dataclass(frozen=True)
class TunedAdam:
    """Adam tuned on one task.

    Attributes:
      grid_losses: ``(15,)`` mean smoothed loss at the budget on the tuning instances, per
        learning rate of :data:`~l2o.benchmark_metrics.ADAM_GRID` (NaN: diverged).
      learning_rate: the best of them.
      curves: ``(seeds, reference_multiple * num_steps + 1)``, its loss curves on the test instances.
    """

    grid_losses: np.ndarray
    learning_rate: float
    curves: np.ndarray


def _cache_key(name: str, options: dict, settings: BenchmarkSettings, **more) -> str:
    """The name of a stored result of task ``name``: everything it depends on (``more``: the
    optimizer's identity, for its own runs), but not where the data files were read from."""
    identity = {"task": name, "options": {k: v for k, v in options.items() if k != "data_dir"},
                "steps": settings.num_steps, "multiple": settings.reference_multiple, "seeds": settings.seeds,
                "window": settings.smoothing, "grid": list(ADAM_GRID), "l2o": installed_version(),
                "format": CACHE_FORMAT, **more}
    return fingerprint(identity, 20)


def _cache_path(cache_dir: Path | None, name: str, options: dict, settings: BenchmarkSettings,
                **more) -> Path | None:
    """Where a stored result of task ``name`` is kept in ``cache_dir`` (``NAME-KEY.npz``,
    :func:`_cache_key`), or ``None`` without a cache."""
    return None if cache_dir is None else Path(cache_dir) / f"{name}-{_cache_key(name, options, settings, **more)}.npz"


def default_cache_dir() -> Path:
    """``$L2O_CACHE_DIR/benchmark``, else the user cache (``~/.cache/l2o/benchmark`` on Linux)."""
    import pooch

    return Path(os.environ.get("L2O_CACHE_DIR") or pooch.os_cache("l2o")) / "benchmark"


def instances(task, settings: BenchmarkSettings, tuning: bool = False):
    """``settings.seeds`` stacked problems ``(insts, params, keys)``: the test instances, or with
    ``tuning`` the tuning ones (another key stream)."""
    stream = _TUNING_INSTANCES if tuning else _TEST_INSTANCES
    return draw_problems(task, jax.random.fold_in(jax.random.PRNGKey(0), stream), settings.seeds)


def grid_losses(task, problems, settings: BenchmarkSettings, rates=ADAM_GRID,
                optimizer: Callable[[jax.Array], optax.GradientTransformation] = optax.adam,
                partial: Path | None = None, progress: str | None = None) -> np.ndarray:
    """Mean smoothed loss after ``num_steps`` steps of ``optimizer(rate)`` at every rate of ``rates``,
    ``(len(rates),)``, on ``problems``. One program (the rate is an input), called once per rate.

    With ``partial`` (a path), each rate's loss is stored there as soon as it is computed and an
    earlier call's are read back, so that a grid interrupted after some rates (hours on a
    convnet) continues with the next one. With ``progress`` (a label), a progress bar over rates.
    """

    def rate_curves(task, problems, learning_rate):
        tx = optimizer(learning_rate)
        run = lambda problem: trajectory(task, tx, *problem, settings.num_steps)[0]
        return jax.lax.map(run, problems, batch_size=min(settings.parallel_runs, settings.seeds))

    rates = np.asarray(rates, np.float32)
    stored = read_arrays(partial) or {}
    done = stored.get("losses", np.zeros(0))
    if not np.array_equal(stored.get("rates"), rates[:len(done)]):
        done = np.zeros(0)  # another grid's, or damaged: start again
    losses = list(done)
    compiled = jax.jit(rate_curves)
    for rate in tqdm(rates[len(losses):], initial=len(losses), total=len(rates), disable=progress is None,
                     desc=progress, unit="rate", leave=False):
        curves = np.asarray(compiled(task, problems, jnp.float32(rate)))
        losses.append(np.mean([smoothed(seed, settings.smoothing)[-1] for seed in curves]))
        write_arrays(partial, rates=rates[:len(losses)], losses=np.array(losses))
    return np.array(losses)


def tuned_adam(task, name: str, options: dict, settings: BenchmarkSettings, cache_dir: Path | None,
               progress: bool = False) -> TunedAdam:
    """Adam tuned on ``task``'s tuning instances and run on its test instances (the protocol of
    the module docstring), read from the cache when there (and written to it when not). While
    the grid is computed, the rates done so far are kept beside the cache entry
    (``NAME-KEY.grid.npz``), so that an interrupted grid continues where it stopped, and so is
    where the reference run stands (``NAME-KEY.reference.npz``). With
    ``progress``, progress bars over the grid's rates and over the reference run's steps."""
    path = _cache_path(cache_dir, name, options, settings)
    stored = read_arrays(path)
    if stored is not None and {"grid_losses", "learning_rate", "curves"} <= stored.keys():
        return TunedAdam(stored["grid_losses"], float(stored["learning_rate"]), stored["curves"])
    partial = None if path is None else path.with_suffix(".grid.npz")
    losses = grid_losses(task, instances(task, settings, tuning=True), settings, partial=partial,
                         progress=f"tuning Adam on {name}" if progress else None)
    learning_rate = ADAM_GRID[int(np.argmin(np.nan_to_num(losses, nan=np.inf)))]
    curves = run_trajectories(task, optax.adam(learning_rate), instances(task, settings),
                              settings.num_steps * settings.reference_multiple, settings.parallel_runs,
                              progress=f"tuned Adam ({learning_rate:.0e}) on {name}" if progress else None,
                              partial=None if path is None else path.with_suffix(".reference.npz"))[0]
    write_arrays(path, grid_losses=losses, learning_rate=learning_rate, curves=curves)
    if partial is not None:
        partial.unlink(missing_ok=True)
    return TunedAdam(losses, learning_rate, curves)


def default_adam(task, name: str, options: dict, settings: BenchmarkSettings, cache_dir: Path | None,
                 progress: bool = False) -> np.ndarray:
    """Adam at 1e-3 on ``task``'s test instances, ``(seeds, num_steps + 1)``: the same for every
    optimizer benchmarked, so read from the cache when there (and written to it when not)."""
    path = _cache_path(cache_dir, name, options, settings, baseline="adam", learning_rate=1e-3)
    stored = read_arrays(path)
    if stored is not None and "curves" in stored:
        return stored["curves"]
    curves = run_trajectories(task, optax.adam(1e-3), instances(task, settings), settings.num_steps,
                              settings.parallel_runs, progress=f"Adam 1e-3 on {name}" if progress else None,
                              partial=None if path is None else path.with_suffix(".partial.npz"))[0]
    write_arrays(path, curves=curves)
    return curves


def task_options(name: str, data_dir: str | None) -> dict:
    """The options :func:`l2o.tasks.get_task` builds benchmark task ``name`` with (where its data is read)."""
    return {"data_dir": data_dir} if data_dir is not None and name != "quadratic" else {}


def benchmark_task(optimizer: optax.GradientTransformation, name: str, settings: BenchmarkSettings,
                   data_dir: str | None = None, cache_dir: Path | None = None, progress: bool = False,
                   partial: Path | None = None) -> TaskResult:
    """The optimizer, Adam at 1e-3 and the tuned Adam on task ``name``'s test instances (both
    Adams cached in ``cache_dir``; ``progress``: progress bars while anything runs; ``partial``:
    where the optimizer's runs are stored as they go, so that an interrupted call continues)."""
    options = task_options(name, data_dir)
    task = get_task(name, **options)
    tuned = tuned_adam(task, name, options, settings, cache_dir, progress)
    problems = instances(task, settings)
    curves = run_trajectories(task, optimizer, problems, settings.num_steps, settings.parallel_runs,
                              progress=f"the optimizer on {name}" if progress else None, partial=partial)[0]
    default = default_adam(task, name, options, settings, cache_dir, progress)
    window = settings.smoothing
    metric = lambda f, runs: np.array([f(run, ref, window) for run, ref in zip(runs, tuned.curves)])
    return TaskResult(name, curves, default, tuned.curves, tuned.learning_rate, metric(speedup, curves),
                      metric(normalized_final_loss, curves), metric(speedup, default),
                      metric(normalized_final_loss, default))


def finished_task(optimizer: optax.GradientTransformation, name: str, settings: BenchmarkSettings,
                  data_dir: str | None, cache_dir: Path | None, finished: Path | None,
                  progress: bool = False) -> TaskResult:
    """:func:`benchmark_task`, read from ``finished`` (a path) when an earlier run stored it there,
    else computed and stored there (the optimizer's runs kept as they go beside it, in
    ``NAME-KEY.partial.npz``, so that a task interrupted halfway continues)."""
    stored = read_arrays(finished)
    fields = [field.name for field in dataclasses.fields(TaskResult) if field.name != "name"]
    if stored is not None and set(fields) <= stored.keys():
        values = {field: stored[field] for field in fields}
        return TaskResult(name, **{**values, "tuned_learning_rate": float(values["tuned_learning_rate"])})
    partial = None if finished is None else finished.with_suffix(".partial.npz")
    result = benchmark_task(optimizer, name, settings, data_dir, cache_dir, progress, partial)
    write_arrays(finished, **{field: getattr(result, field) for field in fields})
    return result


def check_tasks(tasks: tuple[str, ...]) -> None:
    """A one-line :class:`L2OError` unless ``tasks`` is a non-empty selection of :data:`BENCHMARK_TASKS`."""
    unknown = [name for name in tasks if name not in BENCHMARK_TASKS]
    if unknown or not tasks:
        raise L2OError(f"unknown benchmark task {', '.join(unknown) or '(none)'}; "
                       f"choose from {', '.join(BENCHMARK_TASKS)}")


def benchmark(optimizer: optax.GradientTransformation, optimizer_name: str = "optimizer",
              tasks: tuple[str, ...] = BENCHMARK_TASKS, settings: BenchmarkSettings | None = None,
              data_dir: str | None = None, cache_dir: Path | None = None, progress: bool = False,
              finished_dir: Path | None = None, optimizer_identity: str | None = None) -> BenchmarkResult:
    """Runs ``optimizer`` (an optax transformation) through the benchmark protocol on ``tasks``
    (default :class:`BenchmarkSettings`; ``cache_dir``: where tuned Adam's curves are kept,
    ``None`` for no cache).

    With ``finished_dir`` and ``optimizer_identity`` (a string that differs whenever the
    optimizer does, e.g. a hash of its meta-parameters), every task's result is stored in
    ``finished_dir`` when it is done, and a task stored there by an earlier call with the same
    identity, settings and l2o version is read instead of run again.
    """
    settings = settings or BenchmarkSettings()
    check_tasks(tasks)
    if (finished_dir is None) != (optimizer_identity is None):
        raise ValueError("benchmark: pass finished_dir and optimizer_identity together (or neither)")
    stored = {name: None if finished_dir is None else finished_path(finished_dir, name, settings, data_dir,
                                                                    optimizer_identity) for name in tasks}
    restored = {name for name, path in stored.items() if path is not None and path.is_file()}
    results = []
    with tqdm(total=len(tasks), initial=len(restored), disable=not progress, desc="benchmark", unit="task") as bar:
        for name in tasks:
            bar.set_postfix_str(name)
            results.append(finished_task(optimizer, name, settings, data_dir, cache_dir, stored[name], progress))
            bar.update(name not in restored)  # the tasks read back are counted from the start
    return BenchmarkResult(optimizer_name, settings, results, optimizer_identity)


def finished_path(finished_dir: Path, name: str, settings: BenchmarkSettings, data_dir: str | None,
                  optimizer_identity: str) -> Path:
    """Where :func:`benchmark` keeps the result of task ``name`` for the optimizer ``optimizer_identity``."""
    key = _cache_key(name, task_options(name, data_dir), settings, optimizer=optimizer_identity)
    return Path(finished_dir) / f"{name}-{key}.npz"


# How an optimizer that is told the budget may scale its steps over it (``l2o benchmark --schedule``):
# ``RUN_SCHEDULES[name](peak, num_steps)`` falls from ``peak`` at the first step to zero.
RUN_SCHEDULES: dict[str, Callable[[float, int], optax.Schedule]] = {
    "cosine": lambda peak, num_steps: optax.cosine_decay_schedule(peak, num_steps),
    "linear": lambda peak, num_steps: optax.linear_schedule(peak, 0.0, num_steps),
}


def run_schedule(schedule: str, num_steps: int) -> optax.Schedule:
    """The multiplier ``schedule`` (a key of :data:`RUN_SCHEDULES`) gives over ``num_steps``: 1 at
    the first step, 0 at the budget."""
    if schedule not in RUN_SCHEDULES:
        raise L2OError(f"unknown schedule {schedule!r}; choose from constant, {', '.join(RUN_SCHEDULES)}")
    return RUN_SCHEDULES[schedule](1.0, num_steps)


def over_the_run(resolved: tuple[str, optax.GradientTransformation, str], schedule: str,
                 num_steps: int) -> tuple[str, optax.GradientTransformation, str]:
    """:func:`resolve_optimizer`'s ``(name, transformation, identity)`` with every step scaled by
    :func:`run_schedule`, as a user who knows the length of the run would give it
    (``l2o.load_optax(name, learning_rate=schedule)``). The name and the identity say so, so a
    scheduled optimizer's finished tasks and reports are never taken for the constant one's."""
    multiplier = run_schedule(schedule, num_steps)
    name, optimizer, identity = resolved
    return f"{name}, {schedule} over the run", with_learning_rate(optimizer, multiplier), f"{identity} {schedule}"


def resolve_optimizer(spec: str) -> tuple[str, optax.GradientTransformation, str]:
    """``(name, transformation, identity)`` of what ``l2o benchmark`` was given: a run directory
    or saved optimizer, a shipped optimizer's name (:mod:`l2o.pretrained`), a baseline's name
    (at its default learning rate) or an untuned optimizer's (:data:`l2o.optimizers.untuned.UNTUNED`,
    at its published settings). ``identity`` changes whenever the optimizer does: the hash of a
    learned optimizer's definition and meta-parameters, a baseline's name and rate."""
    from flax import serialization

    from l2o import pretrained
    from l2o.optimizers import BASELINES, get_baseline
    from l2o.optimizers.baselines import DEFAULT_LEARNING_RATES
    from l2o.optimizers.untuned import UNTUNED, untuned_name
    from l2o.saved_optimizer import load_optimizer

    if Path(spec).exists() or pretrained.is_shipped(spec):
        lopt, theta = load_optimizer(spec)
        weights = hashlib.sha256(serialization.to_bytes(theta)).hexdigest()
        return spec, lopt.transform(theta), fingerprint({"optimizer": repr(lopt), "theta": weights}, 20)
    by_lower = {name.lower(): name for name in BASELINES}
    if spec.lower() in by_lower:
        baseline = by_lower[spec.lower()]
        rate = DEFAULT_LEARNING_RATES[baseline]
        return f"{baseline} {rate:g}", get_baseline(baseline)(rate), f"{baseline} {rate!r}"
    name = untuned_name(spec)
    if name:
        return name, UNTUNED[name](), f"untuned {name}"
    raise L2OError(f"{spec!r} is neither a run directory, a shipped optimizer nor a baseline; pass the --save_path "
                   f"of an `l2o train` run, one of {', '.join(pretrained.names())} (shipped), one of "
                   f"{', '.join(BASELINES)} (at its default learning rate), or one of {', '.join(UNTUNED)} "
                   "(at its published settings)")
