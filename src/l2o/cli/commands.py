"""What each ``l2o`` command does with its parsed flags: translate them into the library's
requests (:mod:`l2o.train_settings`, :mod:`l2o.evaluation_plan`), run, and print."""

from __future__ import annotations

import argparse
import contextlib
import shlex
import shutil
import sys
from pathlib import Path

from l2o.cli.flags import NETWORK_FLAGS, TRAIN_FLAGS
from l2o.errors import L2OError
from l2o.evaluation_plan import EvaluationPlan, EvaluationRequest, plan_evaluation, refuse_custom_tasks
from l2o.run_directory import RunDirectory

DEMO_EPOCHS = 50


def _check_save_path(path: Path | None, overwrite: bool) -> None:
    """Refuses, before any compilation, a --save_path that cannot be written or holds a run."""
    from l2o.io import check_writable_directory

    if path is None:
        return
    check_writable_directory(path)
    if RunDirectory(path).holds_run() and not overwrite:
        raise L2OError(
            f"--save_path {path} already holds a run; continue it with `l2o resume {path}`, "
            "choose a new directory or pass --overwrite"
        )


def _train_and_report(config, save_path: Path | None, resume: bool, overwrite: bool) -> None:
    from l2o import distributed
    from l2o.meta import MetaTrainer

    trainer = MetaTrainer(config, save_path)
    if save_path is None:
        print("l2o: note: no --save_path given, so nothing will be saved", file=sys.stderr)
    result = trainer.train(progress=distributed.is_writer(), resume=resume, overwrite=overwrite)
    if not distributed.is_writer():
        return
    trained_on = " + ".join(name for name, _ in config.problems())
    print(
        f"trained {config.optimizer.name} on {trained_on}: {result.meta_iterations} meta-iterations "
        f"in {result.seconds:.1f}s, best validation score {result.best_score:.3f}"
    )
    if save_path is not None:
        print(f"saved to {save_path}/best (load with l2o.load({str(save_path)!r}))")


def train_arguments(args: argparse.Namespace):
    """The :class:`~l2o.config.TrainConfig` and run directory (or ``None``) `l2o train`'s
    arguments ask for (:func:`l2o.train_settings.train_config`)."""
    from l2o.train_settings import train_config

    network = {name: getattr(args, name) for name in NETWORK_FLAGS if getattr(args, name) is not None}
    flags = {name: getattr(args, name) for name in TRAIN_FLAGS}
    if args.problem_grid:
        flags["problem_grid"] = dict(args.problem_grid)
    config, directory = train_config(args.settings, flags,
                                     dict(args.problem_option), {**network, **dict(args.optimizer_option)},
                                     args.data_dir)
    save_path = args.save_path or directory
    return config, Path(save_path) if save_path else None


def _connect(args: argparse.Namespace) -> None:
    """Joins the other processes of a multi-process run, if this is one (before any JAX work)."""
    from l2o import distributed

    distributed.connect(args.coordinator_address, args.num_processes, args.process_id)


def cmd_train(args: argparse.Namespace) -> int:
    _connect(args)  # before train_arguments, whose checks run JAX
    config, save_path = train_arguments(args)
    if not args.process_id:  # process 0 (or the only one) writes the run directory
        _check_save_path(save_path, args.overwrite)
    _train_and_report(config, save_path, resume=False, overwrite=args.overwrite)
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    run_dir = Path(args.path)
    config_path = RunDirectory(run_dir).config
    if not config_path.is_file():
        raise L2OError(f"{run_dir} holds no config.json; pass the --save_path of an `l2o train` run")
    refuse_custom_tasks(run_dir, "resume it from Python with MetaTrainer(config, path, tasks=[...]).train(resume=True)")
    _connect(args)
    _train_and_report(RunDirectory(run_dir).read_config(), run_dir, resume=True, overwrite=False)
    return 0


def _evaluation_request(args: argparse.Namespace, kind: str, **fixed) -> EvaluationRequest:
    """The :class:`EvaluationRequest` of `l2o evaluate`'s or `l2o baseline`'s flags."""
    values = dict(optimizers=args.optimizer.split(","), problem_options=dict(args.problem_option),
                  data_dir=args.data_dir, learning_rate=args.learning_rate, tune=args.tune,
                  tuning_grid=args.tuning_grid, num_instances=args.num_epochs, tuning_instances=args.tuning_epochs,
                  num_steps=args.num_steps, seed=args.seed, parallel_runs=args.parallel_runs, out=args.out,
                  overwrite=args.overwrite, kind=kind)
    return EvaluationRequest(**{**values, **fixed})


def _run_evaluation(plan: EvaluationPlan, command: str) -> None:
    from l2o.evaluate import Tuned, evaluate
    from l2o.report import format_paired, format_table, write_report

    request = plan.request
    tuned = any(isinstance(optimizer, Tuned) for optimizer in plan.optimizers.values())
    tuning = f" (tuning baselines on {request.tuning_instances} other instances)" if tuned else ""
    print(f"evaluating {', '.join(plan.optimizers)} on {plan.task.name}: {request.num_instances} test instances, "
          f"{plan.num_steps} steps{tuning}...")
    evaluation = evaluate(
        plan.task, plan.optimizers, num_steps=plan.num_steps, num_instances=request.num_instances,
        num_tuning_instances=request.tuning_instances, seed=request.seed, parallel_runs=request.parallel_runs,
        progress=True,
    )
    print(format_table(evaluation))
    if format_paired(evaluation):
        print(format_paired(evaluation))
    write_report(evaluation, plan.out, command)
    print(f"wrote {plan.out}/results.json, {plan.out}/report.md, {plan.out}/loss.png")


def cmd_evaluate(args: argparse.Namespace) -> int:
    request = _evaluation_request(args, "evaluate", path=args.path, problem=args.problem)
    _run_evaluation(plan_evaluation(request), "l2o " + shlex.join(sys.argv[1:]))
    return 0


def cmd_baseline(args: argparse.Namespace) -> int:
    """Keras L2O's baseline.py: tuned hand-designed optimizers on a configuration's problem."""
    from l2o.train_settings import train_config

    config, _ = train_config(args.settings, {})
    if "L2L" in [n.strip().upper() for n in args.optimizer.split(",")]:
        raise L2OError("l2o baseline evaluates hand-designed optimizers; use `l2o evaluate --path RUN` for L2L")
    plan = plan_evaluation(_evaluation_request(args, "baseline"), run_config=config)
    _run_evaluation(plan, "l2o " + shlex.join(sys.argv[1:]))
    return 0


def cmd_benchmark(args: argparse.Namespace) -> int:
    """The benchmark protocol (:mod:`l2o.benchmark`) on one optimizer; writes its report."""
    from l2o.benchmark import (
        BENCHMARK_TASKS,
        FINISHED_TASKS,
        BenchmarkSettings,
        benchmark,
        check_tasks,
        default_cache_dir,
        finished_path,
        over_the_run,
        resolve_optimizer,
    )
    from l2o.benchmark_report import format_table, write_report
    from l2o.io import exclusive_directory

    name, optimizer, identity = resolve_optimizer(args.optimizer)
    tasks = tuple(t.strip() for t in args.tasks.split(",") if t.strip()) if args.tasks else BENCHMARK_TASKS
    check_tasks(tasks)
    settings = BenchmarkSettings(args.num_steps, args.seeds, args.reference_multiple, parallel_runs=args.parallel_runs)
    if args.schedule != "constant":
        name, optimizer, identity = over_the_run((name, optimizer, identity), args.schedule, settings.num_steps)
    out = Path(args.out or (Path(args.optimizer) / "benchmark" if Path(args.optimizer).exists()
                            else Path("runs") / f"benchmark-{args.optimizer}"))
    with exclusive_directory(out, "--out"):
        if (out / "benchmark.json").exists() and not args.overwrite:
            raise L2OError(f"{out} already holds a benchmark; pass --overwrite, or another --out (to add tasks to it: "
                           f"benchmark them into another --out and join the two in `l2o compare {out}+OTHER`)")
        finished = out / FINISHED_TASKS
        print(f"benchmarking {name} on {len(tasks)} tasks: {settings.num_steps} steps, {settings.seeds} seeds "
              f"(tuned Adam's and Adam 1e-3's curves are cached in {default_cache_dir()}; finished tasks are kept "
              f"in {finished}, so the same command continues after an interruption)")
        stored = {task: finished_path(finished, task, settings, args.data_dir, identity) for task in tasks}
        done = [task for task, path in stored.items() if path.is_file()]
        if done:
            print(f"continuing an interrupted benchmark: {', '.join(done)} finished before "
                  f"({len(done)} of {len(tasks)})")
        result = benchmark(optimizer, name, tasks, settings, args.data_dir, default_cache_dir(), progress=True,
                           finished_dir=finished, optimizer_identity=identity)
        print(format_table(result))
        write_report(result, out, "l2o " + shlex.join(sys.argv[1:]))
        for path in stored.values():  # what they held is in the report now; another optimizer's unfinished tasks stay
            path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            finished.rmdir()  # when empty
    print(f"wrote {out}/benchmark.json, {out}/report.md, {out}/speedups.png")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """Benchmarks side by side on their common tasks (:mod:`l2o.benchmark_comparison`)."""
    from l2o.benchmark_comparison import compare, format_markdown, write_comparison
    from l2o.io import check_writable_directory

    labels = [label.strip() for label in args.labels.split(",")] if args.labels else None
    comparison = compare(args.benchmarks, labels)
    if args.out:
        out = Path(args.out)
        if (out / "comparison.md").exists() and not args.overwrite:
            raise L2OError(f"{out} already holds a comparison; pass another --out or --overwrite")
        check_writable_directory(out)
    print(format_markdown(comparison))
    if args.out:
        write_comparison(comparison, args.out, "l2o " + shlex.join(sys.argv[1:]))
        print(f"wrote {args.out}/comparison.md, {args.out}/comparison.json, {args.out}/comparison.png")
    return 0


def cmd_progress(args: argparse.Namespace) -> int:
    """A run's progress (:mod:`l2o.run_progress`): printed, and plotted to RUN/training.png."""
    from l2o.run_progress import PLOT_FILE, plot_progress, read_progress

    progress = read_progress(args.path)
    print(f"{args.path}: {progress.epochs} of {progress.num_epochs} epochs, {progress.seconds:,.0f} s of meta-training")
    for epoch, score in progress.validations:
        print(f"  epoch {epoch:>6}  validation {score:9.4f}{'  best' if (epoch, score) == progress.best else ''}")
    path = Path(args.path) / PLOT_FILE
    plot_progress(progress, path, str(args.path))
    print(f"wrote {path}")
    return 0


def cmd_pretrained(args: argparse.Namespace) -> int:
    """Lists the optimizers shipped with l2o (:mod:`l2o.pretrained`) and how each is reproduced."""
    from l2o import pretrained

    for name in pretrained.names():
        print(f"{name}: {pretrained.describe(name)}\n  reproduce: l2o train {pretrained.recipe(name)} "
              f"--save_path runs/{name}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Meta-trains DM on quadratic for about two minutes, then evaluates against tuned baselines."""
    from l2o.presets import preset_config

    out = Path(args.out)
    if out.exists():
        if not (out / ".l2o-demo").exists():
            raise L2OError(f"{out} exists and is not a demo output; pass another --out")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / ".l2o-demo").touch()
    print(f"[1/2] meta-training the DM LSTM optimizer on quadratic ({args.num_epochs} epochs)")
    config = preset_config("quadratic", num_epochs=args.num_epochs, evaluation_period=10, log_period=10)
    _train_and_report(config, out / "train", resume=False, overwrite=False)
    print("[2/2] evaluating against SGD, Momentum, NAG, RMSProp and Adam with tuned learning rates")
    request = EvaluationRequest(optimizers=["all"], path=str(out / "train"), out=str(out), overwrite=True)
    _run_evaluation(plan_evaluation(request), "l2o demo")
    return 0
