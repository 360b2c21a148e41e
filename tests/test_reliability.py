"""Reliability: one owner per run directory, no mixed or silently wrong results, every bad input
one line with exit status 2 (docs/RELIABILITY.md lists the cases; each class has a test here or
in test_architecture_contract.py)."""

import argparse
import errno
import json
import os
import signal
import stat
import subprocess
import sys
import time
import warnings
from pathlib import Path

import jax
import pytest

import l2o
from l2o import cli
from l2o.cli import commands
from l2o.cli.flags import finite_float
from l2o.config import FLAT_NAMES, SECTIONS, TrainConfig
from l2o.errors import L2OError
from l2o.io import atomic_write, exclusive_directory, json_text, remove_temporary_files
from l2o.meta import MetaTrainer
from l2o.optimizers import get_learned
from l2o.presets import preset_config
from l2o.run_directory import RunDirectory
from l2o.saved_optimizer import save_optimizer, training_info

TINY = ["--problem", "quadratic", "--num_epochs", "2", "--num_steps", "10", "--unroll_length", "5",
        "--n_samplings", "2", "--evaluation_epochs", "4", "--evaluation_period", "1", "--log_period", "1"]
HELPERS = Path(__file__).resolve().parent / "helpers"
QUICK_EVAL = ["--num_epochs", "3", "--tuning_epochs", "2", "--num_steps", "5", "--tuning_grid", "1e-2,1,3"]


def one_line_error(capsys, argv, *fragments) -> str:
    status = cli.main(argv)
    err = capsys.readouterr().err.strip()
    assert status == 2, err
    assert "\n" not in err and err.startswith("l2o: error: ") and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, err
    return err


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("reliability") / "run"
    assert cli.main(["train", *TINY, "--save_path", str(path)]) == 0
    return path


# 1. One owner per run directory.


def test_a_second_process_cannot_train_into_an_owned_run_directory(tmp_path, capsys):
    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, str(HELPERS / "hold_run_directory.py"), str(run)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        one_line_error(capsys, ["train", *TINY, "--save_path", str(run)], "in use by another l2o process", "pid")
        assert not (run / "config.json").exists() and not (run / "best").exists()
    finally:
        holder.send_signal(signal.SIGKILL)  # a killed owner leaves no stuck lock
        holder.wait()
    with RunDirectory(run).owned():
        pass


def test_a_second_benchmark_cannot_write_into_a_folder_another_is_writing(tmp_path, capsys, monkeypatch):
    """Two `l2o benchmark --out DIR` at once would both run every task and race on the report:
    the second is a one-line error that names the option to change, and leaves DIR as it was."""
    monkeypatch.setenv("L2O_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "bench"
    argv = ["benchmark", "SGD", "--tasks", "quadratic", "--num_steps", "10", "--seeds", "2", "--out", str(out)]
    with exclusive_directory(out, "--out"):  # flock: a second open of the lock file conflicts, even in-process
        one_line_error(capsys, argv, "in use by another l2o process", "pid", "--out")
        assert sorted(path.name for path in out.iterdir()) == [".lock"]
    assert cli.main(argv) == 0 and (out / "benchmark.json").is_file()


# 4. Ctrl-C: one line and exit status 130, whatever exception the interrupt surfaced as.


def test_an_interrupt_wrapped_in_another_exception_is_still_an_interrupt(monkeypatch, capsys):
    def interrupted(args):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as error:
            raise ValueError("setting an array element with a sequence") from error

    monkeypatch.setattr(commands, "train_arguments", interrupted)
    assert cli.main(["train", "--num_epochs", "1"]) == 130
    assert capsys.readouterr().err.strip() == "l2o: interrupted; what was saved before is intact"


def test_ctrl_c_during_training_exits_130_and_resume_continues(tmp_path):
    run = tmp_path / "run"
    flags = [*TINY, "--num_epochs", "60", "--evaluation_period", "20", "--save_path", str(run)]
    # Ctrl-C's default action for the child: a shell's background job (as a CI step may be)
    # passes SIGINT on ignored, and Python then never turns it into KeyboardInterrupt.
    process = subprocess.Popen([sys.executable, "-m", "l2o", "train", *flags], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 300
    while not list((run / "checkpoints").glob("epoch-*")):
        assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    err = process.communicate(timeout=120)[1]
    assert process.returncode == 130, err
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip() and "meta-training" not in line]
    assert lines == ["l2o: interrupted; what was saved before is intact"], err
    assert cli.main(["resume", str(run)]) == 0


# 5. Overwriting never leaves a mixture that loads.


def test_an_interrupted_overwrite_leaves_no_old_optimizer_to_load(run_dir, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    (run / "evaluation-quadratic").mkdir()
    config = preset_config("quadratic", optimizer="RNNProp", num_epochs=2, num_steps=10, unroll_length=5)
    trainer = MetaTrainer(config, run)
    with trainer.run_directory.owned():
        trainer._start(resume=False, overwrite=True)  # the new run is killed before its first validation
    assert RunDirectory(run).read_config().optimizer.name == "RNNProp"
    with pytest.raises(L2OError, match="not a saved optimizer"):
        l2o.load(run)
    one_line_error(capsys, ["evaluate", "--path", str(run)], "not a saved optimizer")
    assert not (run / "evaluation-quadratic").exists()


def test_a_theta_file_from_another_save_is_refused(run_dir, tmp_path):
    import shutil

    saved = tmp_path / "saved"
    shutil.copytree(run_dir / "best", saved)
    shutil.copy(run_dir / "last" / "theta.msgpack", saved / "theta.msgpack")
    with pytest.raises(L2OError, match="does not match optimizer.json"):
        l2o.load(saved)


# 6. Tracebacks become one line; an unwritable place is found before anything is written.


SECTIONED = {
    "problems": [{"target": "quadratic", "args": [], "kwargs": {}}],
    "constructor": "DM",
    "network": {"layers": [20, 20]},
    "strategy": {"epochs_per_period": 1, "num_periods": 2},
}


@pytest.mark.parametrize("flags, fragment", [
    (["--optimizer_option", "layers=40,40"], "DM hyperparameter layers"),
    (["--optimizer_option", "layers=[40"], "DM hyperparameter layers"),
    (["--optimizer_option", "output_scale=abc"], "DM hyperparameter output_scale"),
    (["--optimizer_option", "symmetric=False"], "DM hyperparameter symmetric"),
    (["optimizer_options/layers=\"44\""], "DM hyperparameter layers"),
    (["--optimizer", "AdafacMLP", "--optimizer_option", "step_mult=abc"], "AdafacMLP hyperparameter step_mult"),
    (["--optimizer", "ScaleBasic", "--optimizer_option", "init_lr=[1]"], "ScaleBasic hyperparameter init_lr"),
    (["--optimizer", "Multi", "optimizer_options/groups=[{\"name\": \"a\", \"pattern\": \".*\", \"optimizer\": "
      "\"DM\", \"options\": {\"layers\": \"abc\"}}]"], "DM hyperparameter layers"),
    (["--learning_rate", "inf"], "expected a finite number"),
    (["--perturbation_scale", "nan"], "expected a finite number"),
    (["learning_rate=Infinity"], "config key learning_rate"),
    (["clip_norm=NaN"], "config key clip_norm"),
])
def test_bad_training_settings_are_one_line_and_write_nothing(flags, fragment, tmp_path, capsys):
    run = tmp_path / "run"
    one_line_error(capsys, ["train", *TINY, *flags, "--save_path", str(run)], fragment)
    assert not run.exists()


def test_sectioned_files_with_bad_values_are_one_line(tmp_path, capsys):
    for change, fragment in [({"network": {"layers": "abc"}}, "DM hyperparameter layers"),
                             ({"strategy": {"epochs_per_period": "ten"}}, "strategy/epochs_per_period"),
                             ({"strategy": {"epochs_per_period": 1, "num_periods": 1.5}}, "strategy/num_periods")]:
        path = tmp_path / "sectioned.json"
        path.write_text(json.dumps({**SECTIONED, **change}))
        err = one_line_error(capsys, ["train", str(path), "--save_path", str(tmp_path / "run")], fragment)
        assert "tenten" not in err
    one_line_error(capsys, ["train", str(tmp_path)], "is a directory")


@pytest.mark.parametrize("where", ["/proc/l2o-run", "under-a-file/run"])
def test_an_unwritable_save_path_is_refused_before_training(where, tmp_path, capsys, monkeypatch):
    (tmp_path / "under-a-file").write_text("a file")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(MetaTrainer, "train", lambda *a, **k: pytest.fail("trained into an unwritable path"))
    one_line_error(capsys, ["train", *TINY, "--save_path", where], "cannot write into")


def test_a_full_disk_is_one_line_and_keeps_the_previous_file(tmp_path, monkeypatch):
    target = tmp_path / "checkpoint.msgpack"
    atomic_write(target, b"previous")

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(L2OError, match="No space left on device"):
        atomic_write(target, b"next")
    assert target.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.msgpack"]


# 7. Non-finite settings: every float flag and every float configuration key refuses them.


def _subparsers():
    parser = cli._make_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return commands.choices


def test_every_float_flag_refuses_nan_and_infinity(capsys):
    for command, parser in _subparsers().items():
        for action in parser._actions:
            assert action.type is not float, f"l2o {command} {action.option_strings} takes a plain float"
            if action.type is finite_float:
                for value in ("nan", "inf", "-inf"):
                    one_line_error(capsys, [command, f"{action.option_strings[0]}={value}"], "finite")


def test_every_float_configuration_key_refuses_nan_and_infinity():
    for name, (section, field) in FLAT_NAMES.items():
        if "float" in str(SECTIONS[section].model_fields[field].annotation):
            for value in (float("nan"), float("inf")):
                with pytest.raises(L2OError, match=f"config key {name} \\({section}/{field}\\)"):
                    TrainConfig.from_dict({name: value})


# 8. A fixed-learning-rate evaluation says so.


def test_a_fixed_learning_rate_is_reported_as_fixed(tmp_path):
    out = tmp_path / "fixed"
    assert cli.main(["evaluate", "--optimizer", "Adam,SGD", "--learning_rate", "0.1", *QUICK_EVAL,
                     "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    for name in ("Adam", "SGD"):
        assert results["optimizers"][name]["learning_rate"] == 0.1
        assert results["optimizers"][name]["learning_rate_choice"] == "fixed"
    report = (out / "report.md").read_text()
    assert "were tuned" not in report and "Fixed learning rates, not tuned: Adam 0.1, SGD 0.1" in report


# 9. Outputs are checked before any compute is spent.


def test_evaluate_checks_its_output_before_evaluating(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys.modules["l2o.evaluate"], "evaluate",
                        lambda *a, **k: pytest.fail("evaluated before checking --out"))
    (tmp_path / "a-file").write_text("x")
    one_line_error(capsys, ["evaluate", "--optimizer", "Adam", "--out", str(tmp_path / "a-file")], "is a file")
    one_line_error(capsys, ["evaluate", "--optimizer", "Adam", "--out", str(tmp_path / "a-file" / "out")],
                   "cannot write into")


# 10. Files follow the umask.


def test_every_file_of_a_run_and_its_report_follows_the_umask(run_dir, tmp_path):
    out = tmp_path / "report"
    previous = os.umask(0o022)
    try:
        atomic_write(tmp_path / "single", "x")
        assert cli.main(["evaluate", "--path", str(run_dir), "--optimizer", "L2L", *QUICK_EVAL,
                         "--out", str(out)]) == 0
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "single").stat().st_mode) == 0o644
    files = [p for p in [*run_dir.rglob("*"), *out.rglob("*")] if p.is_file() and p.name != ".lock"]
    assert len(files) >= 8
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) & 0o044 == 0o044, f"{path} is not readable by others"


# 11. A run trained on Task objects records them; the CLI refuses to guess.


def test_a_run_on_your_own_task_is_recorded_and_refused_by_the_cli(tmp_path, capsys):
    from l2o.tasks import quadratic

    named = quadratic(batch_size=4)
    own = l2o.Task("my-task", named.sample, named.init, named.loss)
    config = preset_config("quadratic", num_epochs=1, num_steps=10, unroll_length=5, n_samplings=2,
                           evaluation_epochs=2)
    run = tmp_path / "mine"
    MetaTrainer(config, run, tasks=[own]).train(progress=False)
    info = training_info(run)
    assert info.trained_on == ("my-task",) and info.custom_tasks is True and info.num_steps == 10
    one_line_error(capsys, ["evaluate", "--path", str(run)], "your own tasks (my-task)", "l2o.evaluate")
    one_line_error(capsys, ["resume", str(run)], "your own tasks (my-task)", "MetaTrainer")
    with pytest.raises(L2OError, match="resume it with the same tasks"):
        MetaTrainer(config, run).train(progress=False, resume=True)
    assert cli.main(["evaluate", "--path", str(run), "--problem", "quadratic", "--optimizer", "L2L",
                     *QUICK_EVAL, "--out", str(tmp_path / "on-quadratic")]) == 0


# 13. An untrained or unfinished optimizer loads with a warning that says what it is.


def test_loading_an_untrained_or_unfinished_optimizer_warns(run_dir, tmp_path):
    lopt = get_learned("DM")
    theta = lopt.init(jax.random.PRNGKey(0))
    run = tmp_path / "run"
    (run).mkdir()
    (run / "config.json").write_text("{}")
    save_optimizer(run / "best", lopt, theta, epoch=0, num_epochs=50, validation=0.5, trained_on=["quadratic"],
                   num_steps=100)
    with pytest.warns(UserWarning, match="epoch 0 of 50.*untrained"):
        l2o.load(run)
    save_optimizer(run / "best", lopt, theta, epoch=20, num_epochs=50, validation=0.25, trained_on=["quadratic"],
                   num_steps=100)
    with pytest.warns(UserWarning, match="epoch 20 of 50.*has not finished"):
        l2o.load_optax(run)
    info = training_info(run)
    assert (info.epoch, info.num_epochs, info.finished, info.trained_on) == (20, 50, False, ("quadratic",))
    save_optimizer(run / "last", lopt, theta, epoch=50, num_epochs=50)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        l2o.load(run)  # a finished run that improved loads silently
    assert training_info(run).finished is True
    assert training_info(run_dir).finished is True


# 14. Smaller defects.


def test_leftover_temporary_files_are_removed_when_a_run_is_taken_over(run_dir, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    leftovers = [run / ".config.json.1a2b3c4d.tmp", run / "checkpoints" / ".epoch-000002.msgpack.deadbeef.tmp"]
    for path in leftovers:
        path.write_text("half")
    with RunDirectory(run).owned():
        pass
    assert not any(path.exists() for path in leftovers)
    assert remove_temporary_files(run) == []


def test_json_outputs_never_hold_nan_or_infinity(run_dir):
    assert json_text({"a": float("inf"), "b": [float("nan"), 1.5]}) == '{"a": null, "b": [null, 1.5]}'

    def refuse(constant):
        raise AssertionError(f"{constant} in a JSON output")

    for path in run_dir.rglob("*.json*"):
        for line in path.read_text().splitlines() if path.suffix == ".jsonl" else [path.read_text()]:
            json.loads(line, parse_constant=refuse)
    src = Path(l2o.__file__).parent
    not_outputs = ("io.py",)  # l2o.io itself
    writers = [p for p in src.rglob("*.py") if "json.dumps(" in p.read_text() and p.name not in not_outputs]
    assert not writers, f"JSON written without l2o.io: {writers}"


def test_train_without_save_path_says_nothing_is_saved(capsys):
    assert cli.main(["train", *TINY, "--num_epochs", "1"]) == 0
    assert "nothing will be saved" in capsys.readouterr().err


def test_version_and_every_flag_states_its_default(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.strip() == f"l2o {l2o.__version__}"
    for command, parser in _subparsers().items():
        for action in parser._actions:
            if action.option_strings and action.nargs != 0 and action.help != argparse.SUPPRESS:
                assert "default" in action.help, f"l2o {command} {action.option_strings[0]}: no default stated"
