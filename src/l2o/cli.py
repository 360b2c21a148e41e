"""The ``l2o`` command: ``train``, ``resume``, ``evaluate``, ``baseline`` and ``demo``.

Flag names follow DeepMind's ``train.py`` / ``evaluate.py``. Every mistake a user can make ends
in a one-line message and exit status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import warnings
from pathlib import Path

from l2o.errors import L2OError
from l2o.evaluation_plan import EvaluationPlan, EvaluationRequest, plan_evaluation, problem_options, refuse_custom_tasks
from l2o.run_directory import RunDirectory


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line and exit with status 2."""

    def error(self, message):
        raise L2OError(f"{message}; see `{self.prog} --help`")


def _bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _finite_float(text: str) -> float:
    """A float flag's value; NaN and infinities are refused (they only ever give NaN results)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _layers(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated sizes like 20,20, got {text!r}") from None


def _option(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` with VALUE read as JSON when it parses (``[40, 40]``, ``0.5``, ``true``),
    else as a string (``relu``)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE like layers=[40], got {text!r}")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def _add_problem_flags(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--problem_option", type=_option, action="append", default=[], metavar="KEY=VALUE",
        help="problem option, repeatable, e.g. --problem_option layers=[40] --problem_option activation=relu "
        "(default: the problem's own)")
    add("--data_dir", help="folder with the datasets (default: $L2O_DATA_DIR, else the user cache; "
        "missing official files are downloaded there)")


def _add_train_flags(parser: argparse.ArgumentParser) -> None:
    from l2o.meta.estimators import describe_estimators
    from l2o.meta.losses import WEIGHTINGS
    from l2o.optimizers import LEARNED
    from l2o.tasks import TASKS

    add = parser.add_argument
    add("settings", nargs="*", metavar="[CONFIG] [KEY=VALUE ...]",
        help="a JSON configuration file (e.g. a run's config.json), then overrides such as "
        "num_epochs=10 or optimizer_options/layers=[40,40]; flags override both")
    add("--problem", help=f"problem to train on: {', '.join(TASKS)} (default: quadratic)")
    _add_problem_flags(parser)
    add("--save_path", help="run directory; the best optimizer by validation is saved in it "
        "(default: none, and nothing is saved)")
    add("--num_epochs", type=int, help="epochs of meta-training (one epoch = one full-horizon run)")
    add("--log_period", type=int, help="epochs between log lines")
    add("--evaluation_period", type=int, help="epochs between validations")
    add("--evaluation_epochs", type=int, help="validation instances")
    add("--num_steps", type=int, help="horizon: optimization steps per run")
    add("--unroll_length", type=int, help="steps per truncation (one meta-gradient each)")
    add("--learning_rate", type=_finite_float, help="meta-optimizer (Adam) learning rate")
    add("--second_derivatives", type=_bool, help="differentiate through the inner gradient (true/false)")
    add("--estimator", help=f"meta-gradient estimator: {describe_estimators()}")
    add("--perturbation_scale", type=_finite_float, help="standard deviation of the es/pes perturbations")
    add("--random_scaling", type=_finite_float,
        help="meta-train on f(c*x), log c ~ U[-R, R] per coordinate (RNNProp's random scaling; 0: off)")
    add("--seed", type=int, help="seed of every random draw")
    add("--n_samplings", type=int, help="population: instances trained together (antithetic pairs for es/pes)")
    add("--weighting", help=f"meta-loss step weights: {', '.join(WEIGHTINGS)}")
    add("--log_objective", type=_bool, help="minimize the log of the losses (true/false)")
    add("--optimizer", dest="architecture", help=f"learned architecture: {', '.join(LEARNED)} (default: DM)")
    add("--layers", type=_layers, help="LSTM sizes, e.g. 20,20")
    add("--preprocess", help="gradient preprocessing: none, log_sign or log_rescale")
    add("--output_scale", type=_finite_float, help="multiplier of the network output")
    add("--min_log_gradient", type=_finite_float, help="log of the smallest gradient log_rescale resolves")
    add("--symmetric", type=_bool, help="make the optimizer odd in the gradient (true/false)")
    add("--optimizer_option", type=_option, action="append", default=[], metavar="KEY=VALUE",
        help="hyperparameter of the learned architecture, repeatable, e.g. --optimizer_option alpha=0.2 "
        "(default: the architecture's own, or the problem's preset)")
    add("--overwrite", action="store_true", help="allow writing into a --save_path that holds a run")


def _read_json_object(path: Path) -> dict:
    if path.is_dir():
        raise L2OError(f"configuration file {path} is a directory; pass a JSON file such as {path / 'config.json'}")
    if not path.is_file():
        raise L2OError(f"configuration file {path} does not exist; pass a JSON file such as a run's config.json")
    try:
        values = json.loads(path.read_text())
    except ValueError as error:
        raise L2OError(f"{path} is not valid JSON ({error}); fix the file") from None
    if not isinstance(values, dict):
        raise L2OError(f"{path} must hold a JSON object of settings, not a {type(values).__name__}")
    return values


def _settings(items: list[str]) -> tuple[dict, str | None]:
    """Settings from ``[CONFIG] [KEY=VALUE ...]`` and the run directory the file names, if any.

    The file holds l2o's keys or the sectioned Keras-L2O format (:mod:`l2o.config_sections`);
    overrides apply to the file as written (``strategy/epochs_per_period=5`` for a sectioned
    one) before it is translated.
    """
    from l2o.config import apply_overrides
    from l2o.config_sections import from_sectioned, is_sectioned

    files = [item for item in items if "=" not in item]
    if len(files) > 1 or (files and items[0] != files[0]):
        raise L2OError("give at most one configuration file, before the KEY=VALUE overrides")
    values = apply_overrides(_read_json_object(Path(files[0])) if files else {},
                             [item for item in items if "=" in item])
    return from_sectioned(values) if is_sectioned(values) else (values, None)


def _train_config(args: argparse.Namespace):
    from l2o.config import preset_config

    values, directory = _settings(args.settings)
    if args.save_path is None and directory is not None:
        args.save_path = directory
    if args.problem is not None:
        values["problem"] = args.problem
    problem = values.pop("problem", "quadratic")
    if not isinstance(problem, str):
        raise L2OError(f"config key problem: expected a problem name, got {problem!r}")

    names = ("num_epochs", "log_period", "evaluation_period", "evaluation_epochs", "num_steps",
             "unroll_length", "learning_rate", "second_derivatives", "seed", "n_samplings",
             "weighting", "log_objective", "random_scaling", "estimator", "perturbation_scale")
    values.update({name: getattr(args, name) for name in names if getattr(args, name) is not None})
    if args.architecture is not None:
        values["optimizer"] = args.architecture
    network_flags = ("layers", "preprocess", "output_scale", "min_log_gradient", "symmetric")
    network = {name: getattr(args, name) for name in network_flags if getattr(args, name) is not None}
    network.update(dict(args.optimizer_option))
    given = problem_options(problem, dict(args.problem_option), args.data_dir)
    for section, flags in (("optimizer_options", network), ("problem_options", given)):
        if flags:
            if not isinstance(values.get(section, {}), dict):
                raise L2OError(f"config key {section}: expected an object of options, got {values[section]!r}")
            values[section] = {**values.get(section, {}), **flags}
    return preset_config(problem, **values)


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


def cmd_train(args: argparse.Namespace) -> int:
    config = _train_config(args)
    save_path = Path(args.save_path) if args.save_path else None
    _check_save_path(save_path, args.overwrite)
    _train_and_report(config, save_path, resume=False, overwrite=args.overwrite)
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    run_dir = Path(args.path)
    config_path = RunDirectory(run_dir).config
    if not config_path.is_file():
        raise L2OError(f"{run_dir} holds no config.json; pass the --save_path of an `l2o train` run")
    refuse_custom_tasks(run_dir, "resume it from Python with MetaTrainer(config, path, tasks=[...]).train(resume=True)")
    _train_and_report(RunDirectory(run_dir).read_config(), run_dir, resume=True, overwrite=False)
    return 0


def _train_and_report(config, save_path: Path | None, resume: bool, overwrite: bool) -> None:
    from l2o.meta import MetaTrainer

    trainer = MetaTrainer(config, save_path)
    if save_path is None:
        print("l2o: note: no --save_path given, so nothing will be saved", file=sys.stderr)
    result = trainer.train(progress=True, resume=resume, overwrite=overwrite)
    print(
        f"trained {config.optimizer} on {config.problem}: {result.meta_iterations} meta-iterations "
        f"in {result.seconds:.1f}s, best validation score {result.best_score:.3f}"
    )
    if save_path is not None:
        print(f"saved to {save_path}/best (load with l2o.load({str(save_path)!r}))")


def _grid(text: str) -> tuple[float, ...]:
    import numpy as np

    try:
        low, high, points = text.split(",")
        low, high, points = float(low), float(high), int(points)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH,POINTS like 1e-4,1,9, got {text!r}") from None
    if not (0 < low <= high < math.inf and points >= 1):
        raise argparse.ArgumentTypeError(f"need 0 < LOW <= HIGH and POINTS >= 1, got {text!r}")
    return tuple(float(x) for x in np.logspace(np.log10(low), np.log10(high), points))


def _add_evaluate_flags(parser: argparse.ArgumentParser, baselines_only: bool = False) -> None:
    from l2o.optimizers import BASELINES

    add = parser.add_argument
    if baselines_only:
        _add_problem_flags(parser)
        add("--optimizer", default="Adam", help=f"comma-separated list of {', '.join(BASELINES)}, or 'all'")
    else:
        add("--problem", help="problem to evaluate on (default: the problem --path was trained on, "
            "else quadratic)")
        _add_problem_flags(parser)
        add("--optimizer", default="all",
            help=f"comma-separated list of L2L, {', '.join(BASELINES)}, or 'all' "
            "(L2L when --path is given, plus every baseline)")
        add("--path", help="run directory of `l2o train` (for L2L; default: none, baselines only)")
    add("--learning_rate", type=_finite_float, help="fixed learning rate for the baselines, not tuned "
        "(default: none, learning rates are tuned)")
    add("--tune", action="store_true", help="tune baseline learning rates by grid search (default "
        "unless --learning_rate is given)")
    add("--num_epochs", type=int, default=100, help="test instances")
    add("--tuning_epochs", type=int, default=50, help="tuning instances, disjoint from the test ones")
    add("--num_steps", type=int, help="optimization steps per run (default: the trained horizon, else 100)")
    add("--seed", type=int, default=0, help="selects tuning and test instances")
    add("--tuning_grid", type=_grid, help="learning rates tried when tuning, as LOW,HIGH,POINTS "
        "(log-spaced; default 1e-6,1e3,37)")
    add("--parallel_runs", type=int, default=256,
        help="runs computed at once; lower it if a large model runs out of memory")
    add("--out", help="output directory for results.json, report.md, loss.png (default: "
        "PATH/evaluation-PROBLEM with --path, else runs/COMMAND-PROBLEM)")
    add("--overwrite", action="store_true", help="allow replacing a report already in --out")


def _evaluation_request(args: argparse.Namespace, kind: str, **fixed) -> EvaluationRequest:
    """The :class:`EvaluationRequest` of `l2o evaluate`'s or `l2o baseline`'s flags."""
    values = dict(optimizers=args.optimizer.split(","), problem_options=dict(args.problem_option),
                  data_dir=args.data_dir, learning_rate=args.learning_rate, tune=args.tune,
                  tuning_grid=args.tuning_grid, num_instances=args.num_epochs, tuning_instances=args.tuning_epochs,
                  num_steps=args.num_steps, seed=args.seed, parallel_runs=args.parallel_runs, out=args.out,
                  overwrite=args.overwrite, kind=kind)
    return EvaluationRequest(**{**values, **fixed})


def _run_evaluation(plan: EvaluationPlan, command: str) -> None:
    from l2o.evaluate import evaluate
    from l2o.report import format_paired, format_table, write_report

    request = plan.request
    print(f"evaluating {', '.join(plan.optimizers)} on {plan.task.name}: {request.num_instances} test instances, "
          f"{plan.num_steps} steps (tuning baselines on {request.tuning_instances} other instances)...")
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
    from l2o.config import preset_config

    values, _ = _settings(args.settings)
    config = preset_config(values.pop("problem", "quadratic"), **values)
    if "L2L" in [n.strip().upper() for n in args.optimizer.split(",")]:
        raise L2OError("l2o baseline evaluates hand-designed optimizers; use `l2o evaluate --path RUN` for L2L")
    plan = plan_evaluation(_evaluation_request(args, "baseline"), run_config=config)
    _run_evaluation(plan, "l2o " + shlex.join(sys.argv[1:]))
    return 0


DEMO_EPOCHS = 50


def cmd_demo(args: argparse.Namespace) -> int:
    """Meta-trains DM on quadratic for about two minutes, then evaluates against tuned baselines."""
    import shutil

    out = Path(args.out)
    if out.exists():
        if not (out / ".l2o-demo").exists():
            raise L2OError(f"{out} exists and is not a demo output; pass another --out")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / ".l2o-demo").touch()
    from l2o.config import preset_config

    print(f"[1/2] meta-training the DM LSTM optimizer on quadratic ({args.num_epochs} epochs)")
    config = preset_config("quadratic", num_epochs=args.num_epochs, evaluation_period=10, log_period=10)
    _train_and_report(config, out / "train", resume=False, overwrite=False)
    print("[2/2] evaluating against SGD, Momentum, NAG, RMSProp and Adam with tuned learning rates")
    request = EvaluationRequest(optimizers=["all"], path=str(out / "train"), out=str(out), overwrite=True)
    _run_evaluation(plan_evaluation(request), "l2o demo")
    return 0


def _make_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="l2o", description="Learned optimizers: meta-train, evaluate, use.")
    commands = parser.add_subparsers(dest="command", parser_class=_Parser, metavar="COMMAND")
    commands.required = True
    train = commands.add_parser("train", help="meta-train a learned optimizer",
                                description="Meta-train a learned optimizer (truncated BPTT, ES or PES).")
    _add_train_flags(train)
    train.set_defaults(run=cmd_train)
    resume = commands.add_parser(
        "resume", help="continue an interrupted `l2o train` run",
        description="Continue a run from its last checkpoint; it ends exactly where the "
        "uninterrupted run would have.")
    resume.add_argument("path", help="the run directory (--save_path of `l2o train`)")
    resume.set_defaults(run=cmd_resume)
    evaluate = commands.add_parser(
        "evaluate", help="compare optimizers on test instances",
        description="Run optimizers on the same test instances; baselines get tuned learning rates.")
    _add_evaluate_flags(evaluate)
    evaluate.set_defaults(run=cmd_evaluate)
    baseline = commands.add_parser(
        "baseline", help="evaluate tuned hand-designed optimizers on a configuration's problem",
        description="Tune and evaluate hand-designed optimizers on the problem and horizon of a "
        "training configuration; writes the report `l2o evaluate` writes.")
    baseline.add_argument("settings", nargs="*", metavar="[CONFIG] [KEY=VALUE ...]",
                          help="a JSON configuration (e.g. a run's config.json) and overrides")
    _add_evaluate_flags(baseline, baselines_only=True)
    baseline.set_defaults(run=cmd_baseline)
    demo = commands.add_parser(
        "demo", help="train on quadratic for ~2 minutes and compare with tuned baselines",
        description="Meta-train DM on quadratic (~2 minutes on 2 cores), evaluate against tuned "
        "baselines, write runs/demo/.")
    demo.add_argument("--out", default="runs/demo", help="output directory")
    demo.add_argument("--num_epochs", type=int, default=DEMO_EPOCHS, help=argparse.SUPPRESS)
    demo.set_defaults(run=cmd_demo)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    for subparser in commands.choices.values():
        _state_defaults(subparser)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("l2o")
    except PackageNotFoundError:
        return "(not installed)"


# Train flags whose configuration key has another name.
_CONFIG_KEYS = {"architecture": "optimizer"}


def _state_defaults(parser: argparse.ArgumentParser) -> None:
    """Appends its default to every flag's help that does not state one: the flag's own, or,
    for `l2o train`'s flags, the configuration's or DM's (which a problem's preset may change)."""
    import dataclasses

    from l2o.config import TrainConfig
    from l2o.optimizers import DM

    config_defaults = {field.name: field.default for field in dataclasses.fields(TrainConfig)
                       if field.default is not dataclasses.MISSING}
    dm_defaults = {field.name: field.default for field in dataclasses.fields(DM)}
    for action in parser._actions:
        if not action.option_strings or action.help in (None, argparse.SUPPRESS) or "default" in action.help:
            continue
        if action.nargs == 0:  # --help, --version, store_true switches: off unless given
            continue
        key = _CONFIG_KEYS.get(action.dest, action.dest)
        if action.default is not None:
            action.help += f" (default: {action.default})"
        elif key in config_defaults:
            action.help += f" (default: {config_defaults[key]}, unless the problem's preset sets another)"
        elif key in dm_defaults:
            action.help += f" (default: DM's {dm_defaults[key]}, unless the problem's preset sets another)"


def _use_compilation_cache() -> None:
    """Keeps compiled programs in the user cache (``~/.cache/l2o/compilation`` on Linux), so a
    command run again skips the compilations (seconds each on a CPU) that the last one did;
    ``$JAX_COMPILATION_CACHE_DIR``, when set, chooses the place instead."""
    import jax
    import pooch

    if jax.config.jax_compilation_cache_dir is None:
        jax.config.update("jax_compilation_cache_dir", str(Path(pooch.os_cache("l2o")) / "compilation"))


def _interrupted(error: BaseException | None) -> bool:
    """Whether ``error`` is, or was raised while handling, a Ctrl-C: a ``KeyboardInterrupt``
    arriving inside a library call often surfaces as another exception chained to it."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, KeyboardInterrupt):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings of the command line: one line each on stderr, without source location."""
    print(f"l2o: warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``l2o`` command; returns the exit status."""
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return _run(argv)
    except L2OError as error:
        print(f"l2o: error: {error}", file=sys.stderr)
        return 2
    except BaseException as error:
        if _interrupted(error):
            print("\nl2o: interrupted; what was saved before is intact", file=sys.stderr)
            return 130
        if isinstance(error, OSError):  # a file l2o reads or writes outside its own checks
            print(f"l2o: error: {error.strerror or error}: {error.filename or ''}; check the path and its "
                  "permissions", file=sys.stderr)
            return 2
        raise


def _run(argv: list[str] | None) -> int:
    """Parses ``argv`` and runs its command."""
    _use_compilation_cache()
    parser = _make_parser()
    args, extra = parser.parse_known_args(argv)
    # argparse takes one run of positionals; overrides may also follow flags (`--seed 1 a=2`).
    if extra and getattr(args, "settings", None) is not None and all(
        "=" in item and not item.startswith("-") for item in extra
    ):
        args.settings += extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
