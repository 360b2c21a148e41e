"""The ``l2o`` command: ``train``, ``resume``, ``progress``, ``evaluate``, ``baseline``, ``benchmark``,
``compare``, ``pretrained`` and ``demo``.

Flag names follow DeepMind's ``train.py`` / ``evaluate.py`` (:mod:`l2o.cli.flags`); each command
(:mod:`l2o.cli.commands`) translates its flags into the library's requests and prints. Every
mistake a user can make ends in a one-line message and exit status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import warnings
from pathlib import Path

from l2o.cli.commands import (
    DEMO_EPOCHS,
    cmd_baseline,
    cmd_benchmark,
    cmd_compare,
    cmd_demo,
    cmd_evaluate,
    cmd_pretrained,
    cmd_progress,
    cmd_resume,
    cmd_train,
)
from l2o.cli.flags import (
    Parser,
    add_benchmark_flags,
    add_compare_flags,
    add_distributed_flags,
    add_evaluate_flags,
    add_train_flags,
    state_defaults,
)
from l2o.errors import L2OError
from l2o.version import installed_version


def _add_resume_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="the run directory (--save_path of `l2o train`)")
    add_distributed_flags(parser)


def _add_baseline_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("settings", nargs="*", metavar="[CONFIG] [KEY=VALUE ...]",
                        help="a JSON configuration (e.g. a run's config.json) and overrides")
    add_evaluate_flags(parser, baselines_only=True)


def _add_demo_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/demo", help="output directory")
    parser.add_argument("--num_epochs", type=int, default=DEMO_EPOCHS, help=argparse.SUPPRESS)


# name, one-line help, description, flags, what runs it
COMMANDS = (
    ("train", "meta-train a learned optimizer",
     "Meta-train a learned optimizer (truncated BPTT, ES or PES).", add_train_flags, cmd_train),
    ("resume", "continue an interrupted `l2o train` run",
     "Continue a run from its last checkpoint; it ends exactly where the uninterrupted run would have.",
     _add_resume_flags, cmd_resume),
    ("progress", "where a meta-training run stands: its validation curve, plotted",
     "Print a run's epochs, validation scores and best, and plot validation and meta-loss against the epoch to "
     "RUN/training.png; safe while the run trains.", lambda parser: parser.add_argument(
         "path", help="the run directory (--save_path of `l2o train`)"), cmd_progress),
    ("evaluate", "compare optimizers on test instances",
     "Run optimizers on the same test instances; baselines get tuned learning rates.", add_evaluate_flags,
     cmd_evaluate),
    ("baseline", "evaluate tuned hand-designed optimizers on a configuration's problem",
     "Tune and evaluate hand-designed optimizers on the problem and horizon of a training configuration; "
     "writes the report `l2o evaluate` writes.", _add_baseline_flags, cmd_baseline),
    ("benchmark", "speedup over tuned Adam on the field's benchmark tasks",
     "Run an optimizer on learned_optimization's fixed tasks and the classic ones; report its speedup over "
     "learning-rate-tuned Adam per task and its interquartile mean with a 95% interval.", add_benchmark_flags,
     cmd_benchmark),
    ("compare", "benchmarks of several optimizers side by side",
     "Read the reports of `l2o benchmark` and print one table of per-task speedups and normalized final losses, "
     "with each optimizer's IQM and 95% interval computed again over the tasks every report holds.",
     add_compare_flags, cmd_compare),
    ("pretrained", "list the learned optimizers shipped with l2o",
     "List the learned optimizers shipped with l2o: the name that l2o.load_optax, `l2o evaluate --path` and "
     "`l2o benchmark` take, what each is, and the command that reproduces it.", lambda parser: None,
     cmd_pretrained),
    ("demo", "train on quadratic for ~2 minutes and compare with tuned baselines",
     "Meta-train DM on quadratic (~2 minutes on 2 cores), evaluate against tuned baselines, write runs/demo/.",
     _add_demo_flags, cmd_demo),
)


def _make_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="l2o", description="Learned optimizers: meta-train, evaluate, use.")
    subcommands = parser.add_subparsers(dest="command", parser_class=Parser, metavar="COMMAND")
    subcommands.required = True
    for name, summary, description, add_flags, run in COMMANDS:
        subparser = subcommands.add_parser(name, help=summary, description=description)
        add_flags(subparser)
        subparser.set_defaults(run=run)
        state_defaults(subparser, train=name == "train")
    parser.add_argument("--version", action="version", version=f"%(prog)s {installed_version()}")
    return parser


def _use_compilation_cache() -> None:
    """Keeps compiled programs in the user cache (``~/.cache/l2o/compilation`` on Linux), so a
    command run again skips the compilations (seconds each on a CPU) that the last one did;
    ``$JAX_COMPILATION_CACHE_DIR``, when set, chooses the place instead."""
    import jax
    import pooch

    if jax.config.jax_compilation_cache_dir is None:
        jax.config.update("jax_compilation_cache_dir", str(Path(pooch.os_cache("l2o")) / "compilation"))


def _exit_if_a_process_was_lost(error: BaseException) -> None:
    """Ends a process of a multi-process run whose partner died with one line and status 2, at once:
    JAX's own shutdown would wait for the dead process and then abort with a page of logs."""
    from l2o.distributed import lost_contact

    message = lost_contact(error)
    if message is not None:
        print(f"l2o: error: {message}", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(2)


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
        _exit_if_a_process_was_lost(error)
        if _interrupted(error):
            print("\nl2o: interrupted; what was saved before is intact", file=sys.stderr)
            return 130
        if isinstance(error, BrokenPipeError):  # the reader of the output left (`l2o progress RUN | head -1`)
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing more to flush at exit
            return 128 + signal.SIGPIPE  # quietly, with the status of a Unix tool ended by SIGPIPE
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
