"""The command line's flags: value types, the flag groups of each command, their stated defaults.

Flag names follow DeepMind's ``train.py`` / ``evaluate.py``. `l2o train`'s configuration flags
are generated from the configuration's fields (:data:`TRAIN_FLAGS`): type, help and default
come from :mod:`l2o.config`.
"""

from __future__ import annotations

import argparse
import json
import math

from l2o.errors import L2OError

# `l2o train` flags that set a configuration field, by flat name (l2o.config.FLAT_NAMES).
TRAIN_FLAGS = ("problem", "optimizer", "num_epochs", "log_period", "evaluation_period", "evaluation_epochs",
               "num_steps", "unroll_length", "learning_rate", "second_derivatives", "estimator",
               "perturbation_scale", "random_scaling", "seed", "n_samplings", "weighting", "log_objective")
# `l2o train` flags that set a hyperparameter of the learned architecture (DM's names).
NETWORK_FLAGS = ("layers", "preprocess", "output_scale", "min_log_gradient", "symmetric")


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line and exit with status 2."""

    def error(self, message):
        raise L2OError(f"{message}; see `{self.prog} --help`")


def boolean(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def finite_float(text: str) -> float:
    """A float flag's value; NaN and infinities are refused (they only ever give NaN results)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def layers(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated sizes like 20,20, got {text!r}") from None


def option(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` with VALUE read as JSON when it parses (``[40, 40]``, ``0.5``, ``true``),
    else as a string (``relu``)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE like layers=[40], got {text!r}")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def grid(text: str) -> tuple[float, ...]:
    """``LOW,HIGH,POINTS``: POINTS log-spaced learning rates from LOW to HIGH."""
    import numpy as np

    try:
        low, high, points = text.split(",")
        low, high, points = float(low), float(high), int(points)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH,POINTS like 1e-4,1,9, got {text!r}") from None
    if not (0 < low <= high < math.inf and points >= 1):
        raise argparse.ArgumentTypeError(f"need 0 < LOW <= HIGH and POINTS >= 1, got {text!r}")
    return tuple(float(x) for x in np.logspace(np.log10(low), np.log10(high), points))


def add_problem_flags(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--problem_option", type=option, action="append", default=[], metavar="KEY=VALUE",
        help="problem option, repeatable, e.g. --problem_option layers=[40] --problem_option activation=relu "
        "(default: the problem's own)")
    add("--data_dir", help="folder with the datasets (default: $L2O_DATA_DIR, else the user cache; "
        "missing official files are downloaded there)")


def add_train_flags(parser: argparse.ArgumentParser) -> None:
    """`l2o train`'s flags: the settings, :data:`TRAIN_FLAGS` and :data:`NETWORK_FLAGS`."""
    from l2o.config import FLAT_NAMES, SECTIONS

    add = parser.add_argument
    add("settings", nargs="*", metavar="[CONFIG] [KEY=VALUE ...]",
        help="a JSON configuration file (e.g. a run's config.json), then overrides such as "
        "num_epochs=10 or optimizer_options/layers=[40,40]; flags override both")
    for name in TRAIN_FLAGS:
        section, field = FLAT_NAMES[name]
        info = SECTIONS[section].model_fields[field]
        kind = {bool: boolean, int: int, float: finite_float, str: str}[type(info.default)]
        add(f"--{name}", type=kind, help=info.description)
    add_problem_flags(parser)
    add("--save_path", help="run directory; the best optimizer by validation is saved in it "
        "(default: none, and nothing is saved)")
    add("--layers", type=layers, help="LSTM sizes, e.g. 20,20")
    add("--preprocess", help="gradient preprocessing: none, log_sign or log_rescale")
    add("--output_scale", type=finite_float, help="multiplier of the network output")
    add("--min_log_gradient", type=finite_float, help="log of the smallest gradient log_rescale resolves")
    add("--symmetric", type=boolean, help="make the optimizer odd in the gradient (true/false)")
    add("--optimizer_option", type=option, action="append", default=[], metavar="KEY=VALUE",
        help="hyperparameter of the learned architecture, repeatable, e.g. --optimizer_option alpha=0.2 "
        "(default: the architecture's own, or the problem's preset)")
    add("--problem_grid", type=option, action="append", default=[], metavar="KEY=[VALUES]",
        help="values of a problem option to meta-train on, repeatable; one problem family per combination, "
        "trained on in turn, e.g. --problem_grid 'layers=[[32],[64,64]]' --problem_grid 'batch_size=[32,128]' "
        "(default: none, the problem's options only)")
    add("--overwrite", action="store_true", help="allow writing into a --save_path that holds a run")
    add_distributed_flags(parser)


def add_distributed_flags(parser: argparse.ArgumentParser) -> None:
    """How this process joins a multi-process run (:func:`l2o.distributed.connect`)."""
    add = parser.add_argument
    add("--coordinator_address", metavar="HOST:PORT", help="process 0's host and a free port, the same for every "
        "process of a multi-process run (default: a single process, unless a launcher JAX recognizes sets it)")
    add("--num_processes", type=int, help="how many processes the run has (default: 1)")
    add("--process_id", type=int, help="this process's number, 0 .. num_processes - 1; process 0 writes the run "
        "directory (default: 0)")


def add_evaluate_flags(parser: argparse.ArgumentParser, baselines_only: bool = False) -> None:
    """`l2o evaluate`'s flags, or `l2o baseline`'s with ``baselines_only``."""
    from l2o.optimizers import BASELINES

    add = parser.add_argument
    if baselines_only:
        add_problem_flags(parser)
        add("--optimizer", default="Adam", help=f"comma-separated list of {', '.join(BASELINES)}, or 'all'")
    else:
        add("--problem", help="problem to evaluate on (default: the problem --path was trained on, "
            "else quadratic)")
        add_problem_flags(parser)
        add("--optimizer", default="all",
            help=f"comma-separated list of L2L, {', '.join(BASELINES)}, or 'all' "
            "(L2L when --path is given, plus every baseline)")
        add("--path", help="run directory of `l2o train`, or a shipped optimizer's name (for L2L; default: "
            "none, baselines only)")
    add("--learning_rate", type=finite_float, help="fixed learning rate for the baselines, not tuned "
        "(default: none, learning rates are tuned)")
    add("--tune", action="store_true", help="tune baseline learning rates by grid search (default "
        "unless --learning_rate is given)")
    add("--num_epochs", type=int, default=100, help="test instances")
    add("--tuning_epochs", type=int, default=50, help="tuning instances, disjoint from the test ones")
    add("--num_steps", type=int, help="optimization steps per run (default: the trained horizon, else 100)")
    add("--seed", type=int, default=0, help="selects tuning and test instances")
    add("--tuning_grid", type=grid, help="learning rates tried when tuning, as LOW,HIGH,POINTS "
        "(log-spaced; default 1e-6,1e3,37)")
    add("--parallel_runs", type=int, default=256,
        help="runs computed at once; lower it if a large model runs out of memory")
    add("--out", help="output directory for results.json, report.md, loss.png (default: "
        "PATH/evaluation-PROBLEM with --path, else runs/COMMAND-PROBLEM)")
    add("--overwrite", action="store_true", help="allow replacing a report already in --out")


def add_benchmark_flags(parser: argparse.ArgumentParser) -> None:
    """`l2o benchmark`'s flags."""
    from l2o.benchmark import BENCHMARK_TASKS, RUN_SCHEDULES
    from l2o.optimizers import BASELINES
    from l2o.optimizers.untuned import UNTUNED

    add = parser.add_argument
    add("optimizer", metavar="OPTIMIZER", help="a run directory (--save_path of `l2o train`), a shipped "
        f"optimizer's name (l2o.pretrained.names()), a baseline name ({', '.join(BASELINES)}; at its default "
        f"learning rate) or an untuned optimizer ({', '.join(UNTUNED)}; at its published settings)")
    add("--tasks", help=f"comma-separated tasks (default: all of {', '.join(BENCHMARK_TASKS)})")
    add("--num_steps", type=int, default=2000, help="steps per run (the budget)")
    add("--seeds", type=int, default=5, help="instances per task")
    add("--reference_multiple", type=int, default=4, help="tuned Adam runs this many budgets (the speedup's cap)")
    add("--parallel_runs", type=int, default=64, help="runs computed at once; lower it if memory runs out")
    add("--schedule", default="constant", choices=("constant", *RUN_SCHEDULES),
        help="scale the optimizer's steps from 1 at the first step to 0 at --num_steps (as a user who knows the "
             "run's length would); tuned Adam, the reference, keeps its constant rate")
    add("--data_dir", help="folder with the datasets (default: $L2O_DATA_DIR, else the user cache)")
    add("--out", help="output directory (default: OPTIMIZER/benchmark for a run, else runs/benchmark-OPTIMIZER)")
    add("--overwrite", action="store_true", help="allow replacing a benchmark already in --out")


def add_compare_flags(parser: argparse.ArgumentParser) -> None:
    """`l2o compare`'s flags."""
    add = parser.add_argument
    add("benchmarks", nargs="+", metavar="BENCHMARK", help="folders written by `l2o benchmark --out` (or their "
        "benchmark.json); one optimizer's folders of different tasks joined with + count as one (runs/a+runs/a-more); "
        "benchmark Adam at 1e-3 (`l2o benchmark Adam`) to compare with it")
    add("--labels", help="comma-separated names of the optimizers, one per BENCHMARK (default: each one's optimizer)")
    add("--out", help="folder to write comparison.md, comparison.json and comparison.png into (default: print only)")
    add("--overwrite", action="store_true", help="allow replacing a comparison already in --out")


def state_defaults(parser: argparse.ArgumentParser, train: bool) -> None:
    """Appends its default to every flag's help that does not state one: the flag's own, or,
    for `l2o train`'s, the configuration's or DM's, noting where a problem's preset may change it."""
    import dataclasses

    from l2o.config import TrainConfig
    from l2o.optimizers import DM
    from l2o.presets import PROBLEM_PRESETS

    config_defaults = TrainConfig().flat() if train else {}
    dm_defaults = {field.name: field.default for field in dataclasses.fields(DM)} if train else {}
    preset_keys = {key for preset in PROBLEM_PRESETS.values() for key in preset}
    preset_keys |= {key for preset in PROBLEM_PRESETS.values() for key in preset.get("optimizer_options", {})}
    for action in parser._actions:
        if not action.option_strings or action.help in (None, argparse.SUPPRESS) or "default" in action.help:
            continue
        if action.nargs == 0:  # --help, --version, store_true switches: off unless given
            continue
        unless = ", unless the problem's preset sets another" if action.dest in preset_keys else ""
        if action.default is not None:
            action.help += f" (default: {action.default})"
        elif action.dest in config_defaults:
            action.help += f" (default: {config_defaults[action.dest]}{unless})"
        elif action.dest in dm_defaults:
            action.help += f" (default: DM's {dm_defaults[action.dest]}{unless})"
