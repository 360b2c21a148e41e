"""The field's benchmark protocol: any optimizer on fixed tasks, judged by its speedup over
learning-rate-tuned Adam (:mod:`l2o.benchmark_metrics` defines the metrics).

Per task, ``seeds`` instances (initializations and minibatch streams) are drawn once; the
optimizer, Adam at its default learning rate (1e-3, what an untuned user runs) and Adam at each
of the 15 half-decade learning rates of :data:`l2o.benchmark_metrics.ADAM_GRID` run on the same
ones. The tuned Adam is the grid point with the lowest mean smoothed loss after ``num_steps``
steps; its runs continue to ``reference_multiple * num_steps`` steps, so that speedups up to
that multiple are measured. The Adam grid's curves are the expensive part: they are cached on
disk (:func:`reference_curves`), keyed by the task's definition, the settings and l2o's version.
"""

from __future__ import annotations

import dataclasses
import io
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from l2o.benchmark_metrics import ADAM_GRID, iqm, iqm_interval, normalized_final_loss, smoothed, speedup
from l2o.errors import L2OError
from l2o.evaluate import run_trajectories
from l2o.io import atomic_write, fingerprint
from l2o.meta.unroll import trajectory
from l2o.tasks import draw_problems, get_task
from l2o.tasks.fixed import FIXED_TASKS
from l2o.version import installed_version

# learned_optimization's fixed tasks, then the classic problems this project reproduces.
BENCHMARK_TASKS = (*FIXED_TASKS, "quadratic", "mnist")
_INSTANCES = 12  # the benchmark's key stream (evaluation uses 10 and 11)
CACHE_FORMAT = 1


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
    """Every task's :class:`TaskResult`, and the aggregate over tasks and seeds."""

    optimizer: str
    settings: BenchmarkSettings
    tasks: list[TaskResult]

    def aggregate(self, field: str) -> dict:
        """IQM and its 95% interval of a per-seed metric over all tasks and seeds."""
        values = np.stack([getattr(task, field) for task in self.tasks])
        return {"iqm": iqm(values), "ci95": list(iqm_interval(values))}


def _cache_key(name: str, options: dict, settings: BenchmarkSettings) -> str:
    identity = {"task": name, "options": {k: v for k, v in options.items() if k != "data_dir"},
                "steps": settings.num_steps * settings.reference_multiple, "seeds": settings.seeds,
                "grid": list(ADAM_GRID), "l2o": installed_version(), "format": CACHE_FORMAT}
    return fingerprint(identity, 20)


def default_cache_dir() -> Path:
    """``$L2O_CACHE_DIR/benchmark``, else the user cache (``~/.cache/l2o/benchmark`` on Linux)."""
    import pooch

    return Path(os.environ.get("L2O_CACHE_DIR") or pooch.os_cache("l2o")) / "benchmark"


def reference_curves(task, problems, name: str, options: dict, settings: BenchmarkSettings,
                     cache_dir: Path | None) -> np.ndarray:
    """Adam's loss curves at every grid learning rate, ``(15, seeds, reference_multiple * num_steps + 1)``,
    read from the cache when there (and written to it when not)."""
    path = None if cache_dir is None else Path(cache_dir) / f"{name}-{_cache_key(name, options, settings)}.npz"
    if path is not None and path.is_file():
        try:
            return np.load(path)["curves"]
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache entry is computed again
    steps, seeds = settings.num_steps * settings.reference_multiple, problems[2].shape[0]

    def grid_curves(task, problems, grid):  # one program for the whole grid: the rate is an input
        def curves(learning_rate):
            tx = optax.adam(learning_rate)
            run = lambda problem: trajectory(task, tx, *problem, steps)[0]
            return jax.lax.map(run, problems, batch_size=min(settings.parallel_runs, seeds))

        return jax.lax.map(curves, grid, batch_size=max(1, settings.parallel_runs // seeds))

    curves = np.asarray(jax.jit(grid_curves)(task, problems, jnp.asarray(ADAM_GRID, jnp.float32)))
    if path is not None:
        buffer = io.BytesIO()
        np.savez_compressed(buffer, curves=curves)
        atomic_write(path, buffer.getvalue())
    return curves


def _tuned(curves: np.ndarray, settings: BenchmarkSettings) -> int:
    """Index of the grid point with the lowest mean smoothed loss at the budget (diverged: worst)."""
    at_budget = [np.mean([smoothed(seed[: settings.num_steps + 1], settings.smoothing)[-1] for seed in lr_curves])
                 for lr_curves in curves]
    return int(np.argmin(np.nan_to_num(at_budget, nan=np.inf)))


def benchmark_task(optimizer: optax.GradientTransformation, name: str, settings: BenchmarkSettings,
                   data_dir: str | None = None, cache_dir: Path | None = None) -> TaskResult:
    """The optimizer, Adam at 1e-3 and the tuned Adam on task ``name``'s instances."""
    options = {"data_dir": data_dir} if data_dir is not None and name != "quadratic" else {}
    task = get_task(name, **options)
    problems = draw_problems(task, jax.random.fold_in(jax.random.PRNGKey(0), _INSTANCES), settings.seeds)
    grid = reference_curves(task, problems, name, options, settings, cache_dir)
    best = _tuned(grid, settings)
    reference = grid[best]
    curves = run_trajectories(task, optimizer, problems, settings.num_steps, settings.parallel_runs)[0]
    default = run_trajectories(task, optax.adam(1e-3), problems, settings.num_steps, settings.parallel_runs)[0]
    window = settings.smoothing
    metric = lambda f, runs: np.array([f(run, ref, window) for run, ref in zip(runs, reference)])
    return TaskResult(name, curves, default, reference, ADAM_GRID[best], metric(speedup, curves),
                      metric(normalized_final_loss, curves), metric(speedup, default),
                      metric(normalized_final_loss, default))


def benchmark(optimizer: optax.GradientTransformation, optimizer_name: str = "optimizer",
              tasks: tuple[str, ...] = BENCHMARK_TASKS, settings: BenchmarkSettings | None = None,
              data_dir: str | None = None, cache_dir: Path | None = None, progress: bool = False) -> BenchmarkResult:
    """Runs ``optimizer`` (an optax transformation) through the benchmark protocol on ``tasks``
    (default :class:`BenchmarkSettings`; ``cache_dir``: where tuned Adam's curves are kept,
    ``None`` for no cache)."""
    settings = settings or BenchmarkSettings()
    unknown = [name for name in tasks if name not in BENCHMARK_TASKS]
    if unknown or not tasks:
        raise L2OError(f"unknown benchmark task {', '.join(unknown) or '(none)'}; "
                       f"choose from {', '.join(BENCHMARK_TASKS)}")
    results = []
    bar = tqdm(tasks, disable=not progress, desc="benchmark", unit="task")
    for name in bar:
        bar.set_postfix_str(name)
        results.append(benchmark_task(optimizer, name, settings, data_dir, cache_dir))
    return BenchmarkResult(optimizer_name, settings, results)


def resolve_optimizer(spec: str) -> tuple[str, optax.GradientTransformation]:
    """``(name, transformation)`` of what ``l2o benchmark`` was given: a run directory or saved
    optimizer, or a baseline's name (at its default learning rate)."""
    from l2o.optimizers import BASELINES, get_baseline
    from l2o.optimizers.baselines import DEFAULT_LEARNING_RATES
    from l2o.saved_optimizer import load_optimizer

    if Path(spec).exists():
        lopt, theta = load_optimizer(spec)
        return spec, lopt.transform(theta)
    by_lower = {name.lower(): name for name in BASELINES}
    if spec.lower() in by_lower:
        name = by_lower[spec.lower()]
        return f"{name} {DEFAULT_LEARNING_RATES[name]:g}", get_baseline(name)(DEFAULT_LEARNING_RATES[name])
    raise L2OError(f"{spec!r} is neither a run directory nor a baseline; pass the --save_path of an `l2o train` "
                   f"run or one of {', '.join(BASELINES)}")
