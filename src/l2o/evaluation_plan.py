"""What an evaluation runs: a request (optimizer names, a run, a problem, how learning rates are
chosen, sizes) resolved into the task, the optimizers, the horizon and the output folder.

``l2o evaluate`` and ``l2o baseline`` translate their flags into an :class:`EvaluationRequest`;
everything they decide from it is here, where it can be tested without a command line.
"""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path
from typing import Any

from l2o.errors import L2OError
from l2o.run_directory import RunDirectory

LEARNED_NAME = "L2L"


@dataclasses.dataclass(frozen=True)
class EvaluationRequest:
    """What the user asked to evaluate.

    Attributes:
      optimizers: names (``L2L`` and ``l2o.optimizers.BASELINES``, any case), or ``["all"]``:
        L2L when ``path`` is given, plus every baseline.
      path: a run directory, saved optimizer or shipped optimizer's name for L2L; a run's problem
        and horizon are the defaults.
      problem: the problem to evaluate on (default: the run's, else ``quadratic``).
      problem_options: options given for the problem (merged over the run's when it is the same).
      data_dir: the datasets' folder, for problems that read files.
      learning_rate: a fixed learning rate for the baselines; ``None`` tunes them.
      tune: tuning asked for explicitly (excludes ``learning_rate``).
      tuning_grid: the learning rates tried when tuning (``None``: the default grid).
      num_instances, tuning_instances: test and tuning instances (disjoint draws).
      num_steps: steps per run (default: the run's horizon, else the problem's preset).
      seed: selects the tuning and test instances.
      parallel_runs: runs computed at once.
      out: the output folder (default: ``PATH/evaluation-PROBLEM`` for a path, ``runs/KIND-NAME-PROBLEM``
        for a shipped optimizer, else ``runs/KIND-PROBLEM``).
      overwrite: allow replacing a report already in ``out``.
      kind: ``evaluate`` or ``baseline``, for the default output folder.
    """

    optimizers: list[str]
    path: str | None = None
    problem: str | None = None
    problem_options: dict = dataclasses.field(default_factory=dict)
    data_dir: str | None = None
    learning_rate: float | None = None
    tune: bool = False
    tuning_grid: tuple[float, ...] | None = None
    num_instances: int = 100
    tuning_instances: int = 50
    num_steps: int | None = None
    seed: int = 0
    parallel_runs: int = 256
    out: str | None = None
    overwrite: bool = False
    kind: str = "evaluate"


@dataclasses.dataclass(frozen=True)
class EvaluationPlan:
    """What :func:`l2o.evaluate.evaluate` runs, and where the report goes."""

    task: Any
    optimizers: dict
    num_steps: int
    out: Path
    request: EvaluationRequest


def problem_options(problem: str, given: dict, data_dir: str | None, base: dict | None = None) -> dict:
    """A problem's options: ``base``, then ``given``, then ``data_dir`` if the problem reads files."""
    from l2o.tasks import TASKS

    options = {**(base or {}), **given}
    if data_dir is not None:
        if problem in TASKS and "data_dir" not in inspect.signature(TASKS[problem]).parameters:
            raise L2OError(f"--data_dir does not apply to problem {problem!r}, which reads no files; drop it")
        options["data_dir"] = str(Path(data_dir).expanduser().resolve())
    return options


def refuse_custom_tasks(path: str | Path, what: str) -> None:
    """A run meta-trained on Task objects cannot be rebuilt from names; say so, and ``what`` to do."""
    names = RunDirectory(path).custom_task_names()
    if names:
        raise L2OError(
            f"{path} was meta-trained on your own tasks ({', '.join(names)}), which the command line "
            f"cannot rebuild; {what}"
        )


def _optimizer_names(request: EvaluationRequest) -> list[str]:
    from l2o.optimizers import BASELINES

    names = [name.strip() for name in request.optimizers if name.strip()]
    if names == ["all"]:
        names = ([LEARNED_NAME] if request.path else []) + list(BASELINES)
    by_lower = {name.lower(): name for name in (LEARNED_NAME, *BASELINES)}
    unknown = [name for name in names if name.lower() not in by_lower]
    if unknown or not names:
        raise L2OError(f"unknown optimizer {', '.join(unknown) or '(none)'}; choose from {LEARNED_NAME}, "
                       f"{', '.join(BASELINES)} or all")
    return [by_lower[name.lower()] for name in names]


def _check_sizes(request: EvaluationRequest) -> None:
    if request.learning_rate is not None and request.tune:
        raise L2OError("--learning_rate and --tune exclude each other; pass one of them")
    if request.learning_rate is not None and request.learning_rate <= 0:
        raise L2OError(f"--learning_rate must be positive, got {request.learning_rate}")
    for flag, value in (("num_epochs", request.num_instances), ("tuning_epochs", request.tuning_instances),
                        ("parallel_runs", request.parallel_runs), ("num_steps", request.num_steps)):
        if value is not None and value < 1:
            raise L2OError(f"--{flag} must be a positive integer, got {value}")


def _output_folder(request: EvaluationRequest, problem: str) -> Path:
    from l2o import pretrained
    from l2o.io import check_writable_directory

    if request.out:
        out = Path(request.out)
    elif request.path and pretrained.is_shipped(request.path):  # never into the installed package
        out = Path("runs") / f"{request.kind}-{request.path}-{problem}"
    elif request.path:
        out = Path(request.path) / f"evaluation-{problem}"
    else:
        out = Path("runs") / f"{request.kind}-{problem}"
    if (out / "results.json").exists() and not request.overwrite:
        raise L2OError(f"{out} already holds a report; pass another --out or --overwrite")
    check_writable_directory(out)
    return out


def plan_evaluation(request: EvaluationRequest, run_config=None) -> EvaluationPlan:
    """Resolves ``request``; every mistake is a one-line :class:`L2OError` before any compute.

    ``run_config`` (a :class:`~l2o.config.TrainConfig`) supplies the problem, its options and
    the horizon when no ``path`` does (``l2o baseline CONFIG``).
    """
    from l2o.evaluate import Fixed, Tuned
    from l2o.optimizers import get_baseline
    from l2o.presets import PROBLEM_PRESETS
    from l2o.saved_optimizer import load_optimizer
    from l2o.tasks import get_task

    names = _optimizer_names(request)
    _check_sizes(request)
    if LEARNED_NAME in names and not request.path:
        raise L2OError("--optimizer L2L needs --path DIR, the --save_path of an `l2o train` run")
    if request.path and not request.problem:
        refuse_custom_tasks(request.path, "pass --problem NAME, or evaluate it from Python with "
                            "l2o.evaluate(task, {'L2L': l2o.load_optax(path), ...})")
    learned = load_optimizer(request.path) if LEARNED_NAME in names else None
    if request.path and RunDirectory(request.path).config.is_file():  # the run's problem and horizon
        run_config = RunDirectory(request.path).read_config()
    problem = request.problem or (run_config.problem.name if run_config else "quadratic")
    same_problem = run_config is not None and run_config.problem.name == problem
    base = run_config.problems()[0][1] if same_problem else {}  # a grid's first point
    task = get_task(problem, **problem_options(problem, request.problem_options, request.data_dir, base))
    preset_steps = PROBLEM_PRESETS.get(problem, {}).get("num_steps", 100)
    default_steps = run_config.strategy.num_steps if same_problem else preset_steps

    optimizers = {}
    for name in names:
        if name == LEARNED_NAME:
            optimizers[name] = learned[0].transform(learned[1])
        elif request.learning_rate is not None:
            optimizers[name] = Fixed(get_baseline(name), request.learning_rate)
        else:
            optimizers[name] = Tuned(get_baseline(name), *([request.tuning_grid] if request.tuning_grid else []))
    return EvaluationPlan(task, optimizers, request.num_steps or default_steps, _output_folder(request, problem),
                          request)
