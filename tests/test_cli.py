"""The command line: help, an end-to-end run, and one-line errors with exit status 2."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from l2o.cli import main
from l2o.config import SECTIONS, TrainConfig
from l2o.saved_optimizer import THETA_FILE

TINY_TRAIN = ["train", "--problem", "quadratic", "--num_epochs", "2", "--num_steps", "10",
              "--unroll_length", "5", "--n_samplings", "2", "--evaluation_epochs", "4",
              "--evaluation_period", "1", "--log_period", "1"]


def _written(run: Path) -> dict:
    """The settings a run's config.json holds, by flat name."""
    return TrainConfig.from_dict(json.loads((run / "config.json").read_text())).flat()


def assert_user_error(capsys, argv, *fragments):
    status = main(argv)
    err = capsys.readouterr().err.strip()
    assert status == 2
    assert "\n" not in err and err.startswith("l2o: error: ") and "Traceback" not in err
    for fragment in fragments:
        assert fragment in err
    return err


@pytest.mark.parametrize("command", [[], ["train"], ["resume"], ["evaluate"], ["baseline"], ["demo"]])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: l2o" in capsys.readouterr().out


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "run"
    assert main([*TINY_TRAIN, "--save_path", str(path)]) == 0
    return path


def test_train_then_evaluate_writes_the_reports(run_dir, tmp_path):
    out = tmp_path / "eval"
    status = main(["evaluate", "--path", str(run_dir), "--optimizer", "L2L,Adam,sgd",
                   "--num_epochs", "5", "--tuning_epochs", "3", "--out", str(out)])
    assert status == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results["optimizers"]) == {"L2L", "Adam", "SGD"}
    assert results["num_steps"] == 10  # the trained horizon
    assert results["optimizers"]["Adam"]["learning_rate"] is not None
    assert len(results["optimizers"]["L2L"]["final_losses"]) == 5
    assert (out / "loss.png").stat().st_size > 1000


def test_baselines_alone_take_the_runs_problem_and_horizon(run_dir, tmp_path):
    out = tmp_path / "adam"
    assert main(["evaluate", "--path", str(run_dir), "--optimizer", "Adam", "--learning_rate", "0.1",
                 "--num_epochs", "3", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["num_steps"] == 10 and set(results["optimizers"]) == {"Adam"}


def test_bad_training_flags(capsys, tmp_path):
    assert_user_error(capsys, ["train", "--problem", "mnst"], "unknown problem 'mnst'", "quadratic")
    assert_user_error(capsys, ["train", "--num_steps", "0"], "config key num_steps", "greater than or equal to 1")
    assert_user_error(capsys, ["train", "--num_epochs", "-3"], "config key num_epochs", "got -3")
    assert_user_error(capsys, ["train", "--estimator", "spsa"], "config key estimator", "'truncated', 'es' or 'pes'")
    assert_user_error(capsys, ["train", "--num_steps", "10", "--unroll_length", "20"],
                      "unroll_length (20) is longer than the horizon")
    assert_user_error(capsys, ["train", "--num_steps", "ten"], "invalid int value")
    assert_user_error(capsys, ["train", "--optimizer", "LSTM"], "unknown learned optimizer 'LSTM'")
    assert_user_error(capsys, ["train", "--preprocess", "log"], "unknown preprocess 'log'")
    assert_user_error(capsys, ["train", "--second_derivatives", "maybe"], "expected true or false")
    assert_user_error(capsys, ["frobnicate"], "invalid choice")
    assert not any(tmp_path.iterdir())


def test_bad_evaluation_flags(capsys, run_dir, tmp_path):
    assert_user_error(capsys, ["evaluate", "--optimizer", "AdaGrad"], "unknown optimizer AdaGrad")
    assert_user_error(capsys, ["evaluate", "--optimizer", "L2L"], "needs --path")
    assert_user_error(capsys, ["evaluate", "--path", str(tmp_path)], "is not a saved optimizer")
    assert_user_error(capsys, ["evaluate", "--path", str(tmp_path / "nope")], "does not exist")
    assert_user_error(capsys, ["evaluate", "--num_steps", "-1"], "--num_steps must be a positive")
    assert_user_error(capsys, ["evaluate", "--learning_rate", "0.1", "--tune"], "exclude each other")
    assert_user_error(capsys, ["evaluate", "--problem", "cifar100"], "unknown problem 'cifar100'")


def test_existing_run_is_not_overwritten(capsys, run_dir):
    before = {p.name: p.read_bytes() for p in (run_dir / "best").iterdir()}
    assert_user_error(capsys, [*TINY_TRAIN, "--save_path", str(run_dir)], "already holds a run", "--overwrite")
    assert {p.name: p.read_bytes() for p in (run_dir / "best").iterdir()} == before


def test_corrupted_checkpoint_is_refused(capsys, run_dir, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    (copy / "best" / THETA_FILE).write_bytes(b"\x00garbage")
    assert_user_error(capsys, ["evaluate", "--path", str(copy)], "corrupted", "re-run `l2o train`")
    assert (copy / "best" / THETA_FILE).read_bytes() == b"\x00garbage"  # nothing rewritten


def test_console_script_exits_2_without_traceback():
    process = subprocess.run(
        [sys.executable, "-m", "l2o.cli", "train", "--unroll_length", "200"],
        capture_output=True, text=True,
    )
    assert process.returncode == 2
    assert process.stderr.strip().count("\n") == 0 and "Traceback" not in process.stderr


def test_output_into_a_closed_pipe_ends_quietly(monkeypatch, capsys):
    """`l2o pretrained | head -1`: once the reader has gone, l2o stops without an error message or
    traceback, with the status of a Unix tool ended by SIGPIPE."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader has gone before l2o writes its first line
    with open(write_end, "w", buffering=1) as closed_pipe:  # line-buffered: each line is written at once
        monkeypatch.setattr(sys, "stdout", closed_pipe)
        assert main(["pretrained"]) == 128 + signal.SIGPIPE
    assert capsys.readouterr().err == ""


def test_classifier_problems_with_options_and_data_dir(tmp_path, capsys):
    run = tmp_path / "digits-run"
    assert main(["train", "--problem", "mlp_classifier", "--problem_option", "dataset=digits",
                 "--problem_option", "layers=[8]", "--num_epochs", "1", "--num_steps", "6",
                 "--unroll_length", "3", "--n_samplings", "2", "--evaluation_epochs", "2",
                 "--save_path", str(run)]) == 0
    assert _written(run)["problem_options"] == {"dataset": "digits", "layers": [8]}
    out = tmp_path / "relu"
    assert main(["evaluate", "--path", str(run), "--optimizer", "L2L", "--num_epochs", "3",
                 "--problem_option", "activation=relu", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    accuracy = results["optimizers"]["L2L"]["test"]["test_accuracy"]
    assert 0.0 <= accuracy["mean"] <= 1.0 and len(results["optimizers"]["L2L"]["test_metrics"]["test_accuracy"]) == 3
    assert "test_accuracy" in capsys.readouterr().out


def test_bad_problem_and_data_flags(capsys, tmp_path, monkeypatch):
    assert_user_error(capsys, ["train", "--problem", "quadratic", "--data_dir", str(tmp_path)],
                      "--data_dir does not apply to problem 'quadratic'")
    assert_user_error(capsys, ["train", "--problem", "mnist", "--problem_option", "depth=2"],
                      "unknown option(s) depth for problem 'mnist'")
    assert_user_error(capsys, ["train", "--problem_option", "layers"], "expected KEY=VALUE")
    assert_user_error(capsys, ["train", "--problem_grid", "num_dims=3"], "problem_grid/num_dims",
                      "should be a valid list")
    assert_user_error(capsys, ["evaluate", "--tuning_grid", "1,0.1,3"], "need 0 < LOW <= HIGH")
    from l2o.tasks import datasets

    offline = tuple(r._replace(urls=("http://127.0.0.1:9/" + r.name,)) for r in datasets.IDX_FILES["mnist"])
    monkeypatch.setitem(datasets.IDX_FILES, "mnist", offline)
    assert_user_error(capsys, ["train", "--problem", "mnist", "--data_dir", str(tmp_path / "nothing"),
                               "--save_path", str(tmp_path / "run")],
                      "train-images-idx3-ubyte.gz", "missing in", "--data_dir")
    assert not (tmp_path / "run").exists()


def test_architecture_and_its_options_from_the_command_line(tmp_path, capsys):
    import l2o

    run = tmp_path / "rnnprop"
    assert main([*TINY_TRAIN, "--optimizer", "RNNProp", "--optimizer_option", "alpha=0.2",
                 "--optimizer_option", "layers=[8]", "--random_scaling", "1.0", "--save_path", str(run)]) == 0
    config = _written(run)
    assert config["optimizer"] == "RNNProp" and config["random_scaling"] == 1.0
    assert config["optimizer_options"] == {"alpha": 0.2, "layers": [8]}  # no DM preset options
    lopt, _ = l2o.load(run / "best")
    assert lopt == l2o.optimizers.RNNProp(alpha=0.2, layers=(8,))
    capsys.readouterr()
    bad = tmp_path / "bad"
    assert_user_error(capsys, [*TINY_TRAIN, "--optimizer", "RNNProp", "--optimizer_option", "alpah=1",
                               "--save_path", str(bad)], "unknown RNNProp hyperparameter", "alpah")
    assert_user_error(capsys, [*TINY_TRAIN, "--optimizer", "ScaleHierarchical", "--optimizer_option",
                               "init_lr=[0.1,0.01]", "--save_path", str(bad)], "init_lr must be")
    assert_user_error(capsys, [*TINY_TRAIN, "--random_scaling", "-1"], "config key random_scaling",
                      "greater than or equal to 0")
    assert not bad.exists()


def test_train_from_a_config_file_with_overrides(tmp_path, capsys):
    """CONFIG, then KEY=VALUE overrides (``/`` or ``.`` paths), then flags; config.json is the full result."""
    settings = {"problem": "quadratic", "num_epochs": 1, "num_steps": 10, "unroll_length": 5,
                "n_samplings": 2, "evaluation_epochs": 2, "optimizer_options": {"layers": [8]}}
    config_file = tmp_path / "settings.json"
    config_file.write_text(json.dumps(settings))
    run = tmp_path / "run"
    assert main(["train", str(config_file), "estimator=pes", "optimizer_options/output_scale=0.05",
                 "problem_options.num_dims=4", "--n_samplings", "4", "--save_path", str(run), "seed=5",
                 "strategy/unroll_length=2"]) == 0
    assert set(json.loads((run / "config.json").read_text())) == set(SECTIONS)  # written by section
    written = _written(run)
    assert written["estimator"] == "pes" and written["n_samplings"] == 4 and written["num_steps"] == 10
    assert written["seed"] == 5 and written["unroll_length"] == 2
    assert written["optimizer_options"] == {"preprocess": "log_sign", "output_scale": 0.05, "layers": [8]}
    assert written["problem_options"] == {"num_dims": 4}
    assert written["learning_rate"] == 1e-3 and written["loss_epsilon"] == 1e-30  # defaults resolved
    capsys.readouterr()
    again = tmp_path / "again"
    assert main(["train", str(run / "config.json"), "--save_path", str(again)]) == 0  # a run's config reruns it
    assert _written(again) == written
    capsys.readouterr()

    bad = tmp_path / "bad"
    for argv, fragments in [
        ([str(config_file), "num_epochs=0"], ["config key num_epochs", "got 0"]),
        ([str(config_file), "num_epochs=2.5"], ["config key num_epochs", "valid integer"]),
        ([str(config_file), "weighting=median"], ["config key weighting", "'sum', 'mean' or 'final'"]),
        ([str(config_file), "learning_rate=fast"], ["config key learning_rate", "'fast'"]),
        ([str(config_file), "lerning_rate=0.1"], ["unknown config key 'lerning_rate'", "valid keys:"]),
        ([str(config_file), "num_steps/x=1"], ["num_steps holds a value"]),
        ([str(config_file), "num_epochs"], ["at most one configuration file"]),
        ([str(tmp_path / "missing.json")], ["does not exist"]),
    ]:
        assert_user_error(capsys, ["train", *argv, "--save_path", str(bad)], *fragments)
    config_file.write_text("{broken")
    assert_user_error(capsys, ["train", str(config_file)], "is not valid JSON")
    config_file.write_text(json.dumps({"constructor": "DM", "problems": []}))  # the sectioned Keras-L2O format
    assert_user_error(capsys, ["train", str(config_file)], "problems must be a non-empty list")
    assert not bad.exists()


def test_baseline_evaluates_tuned_optimizers_on_a_configurations_problem(tmp_path, capsys):
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"problem": "quadratic", "num_steps": 15, "unroll_length": 5,
                                    "problem_options": {"num_dims": 3}}))
    out = tmp_path / "report"
    assert main(["baseline", str(settings), "num_steps=12", "--optimizer", "Adam,SGD", "--num_epochs", "20",
                 "--tuning_epochs", "5", "--tuning_grid", "1e-2,1,3", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["num_steps"] == 12 and set(results["optimizers"]) == {"Adam", "SGD"}
    assert (out / "report.md").is_file() and (out / "loss.png").is_file()
    capsys.readouterr()
    assert_user_error(capsys, ["baseline", "--optimizer", "L2L"], "hand-designed", "l2o evaluate --path")
    assert_user_error(capsys, ["baseline", "num_dims=3"], "unknown config key 'num_dims'")


def test_the_command_keeps_compiled_programs_in_the_user_cache_unless_told_otherwise(monkeypatch, tmp_path):
    import jax
    import pooch

    from l2o.cli import _use_compilation_cache

    before = jax.config.jax_compilation_cache_dir
    try:
        jax.config.update("jax_compilation_cache_dir", None)
        _use_compilation_cache()
        assert jax.config.jax_compilation_cache_dir == str(Path(pooch.os_cache("l2o")) / "compilation")
        jax.config.update("jax_compilation_cache_dir", str(tmp_path))  # e.g. from $JAX_COMPILATION_CACHE_DIR
        _use_compilation_cache()
        assert jax.config.jax_compilation_cache_dir == str(tmp_path)
    finally:
        jax.config.update("jax_compilation_cache_dir", before)
