"""Exact resume: a killed run continued from its checkpoint ends bit-for-bit like an uninterrupted one."""

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from flax import serialization

from l2o.cli import main
from l2o.config import TrainConfig
from l2o.errors import L2OError
from l2o.meta import MetaTrainer
from l2o.meta.run_checkpoints import checkpoint_files
from l2o.saved_optimizer import THETA_FILE

DATA = Path(__file__).parent / "data"
# 24 epochs, so that a kill 0.15 s after epoch 2's checkpoint lands mid-run even on an idle machine
# (8 epochs were sometimes all done by then).
RUN_FLAGS = ["--problem", "quadratic", "--num_epochs", "24", "--num_steps", "20", "--unroll_length", "5",
             "--n_samplings", "2", "--evaluation_epochs", "4", "--evaluation_period", "6", "--log_period", "1",
             "--optimizer_option", "layers=[4]"]  # a one-layer LSTM: exactness does not depend on its size


def _l2o(*argv) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "l2o", *argv], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def _outcome(run_dir: Path) -> dict:
    """What a run leaves: final and best theta bytes, and its log without wall times."""
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    for record in records:
        record.pop("seconds", None)
    return {
        "last": (run_dir / "last" / THETA_FILE).read_bytes(),
        "best": (run_dir / "best" / THETA_FILE).read_bytes(),
        "records": records,
    }


def _kill_after_checkpoint(process: subprocess.Popen, run_dir: Path, epoch: int, delay: float) -> None:
    """SIGKILLs ``process`` ``delay`` seconds after the checkpoint of ``epoch`` appears (epochs take 0.02 to 0.1 s)."""
    target = run_dir / "checkpoints" / f"epoch-{epoch:06d}.msgpack"
    deadline = time.monotonic() + 300
    while not target.exists():
        assert process.poll() is None, process.stderr.read()
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.01)
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    assert not (run_dir / "last").exists(), "the run had finished before the kill"


def test_sigkilled_run_resumes_to_the_same_theta(tmp_path):
    reference = tmp_path / "reference"
    assert _l2o("train", *RUN_FLAGS, "--save_path", str(reference)).wait() == 0

    run = tmp_path / "killed"
    # Killed mid-epoch, possibly mid-write.
    _kill_after_checkpoint(_l2o("train", *RUN_FLAGS, "--save_path", str(run)), run, epoch=2, delay=0.15)
    resumed = _l2o("resume", str(run))
    assert resumed.wait() == 0, resumed.stderr.read()
    assert _outcome(run) == _outcome(reference)


def _config(**settings) -> TrainConfig:
    return TrainConfig(**{"problem": "quadratic", "num_epochs": 4, "num_steps": 20, "unroll_length": 5,
                          "n_samplings": 2, "evaluation_epochs": 4, "evaluation_period": 1, "log_period": 1,
                          "optimizer_options": {"layers": [4]}, **settings})


# Each mode's own state (the default one's exactness is the SIGKILL test above).
@pytest.mark.parametrize("settings", [
    {"estimator": "pes", "meta_schedule": "cosine"},  # the meta learning rate set anew each epoch
    {  # a curriculum, random truncation lengths, and imitation with its own optimizer
        "strategy": "curriculum", "curriculum_schedule": [10, 20], "min_periods": 1, "unroll_distribution": [5, 10],
        "teachers": [{"name": "Adam", "options": {"learning_rate": 0.05}}], "p_teacher": 0.5,
        "imitation_learning_rate": 0.01,
    },
    {  # two problems trained in turn, two runs per epoch, a fresh optimizer state every truncation
        "extra_problems": [{"name": "scaled-quadratic", "options": {}}], "repeat": 2, "keep_optimizer_state": False,
    },
])
def test_damaged_newest_checkpoint_falls_back_to_the_previous_one(tmp_path, capsys, settings):
    config = _config(**settings)
    finished = MetaTrainer(config, tmp_path).train(progress=False)
    expected = _outcome(tmp_path)
    newest, previous = checkpoint_files(tmp_path)
    assert newest.name == "epoch-000004.msgpack" and previous.name == "epoch-000003.msgpack"
    newest.write_bytes(newest.read_bytes()[:-20])  # a torn file

    with pytest.warns(UserWarning, match="skipping checkpoint"):
        result = MetaTrainer(config, tmp_path).train(progress=False, resume=True)
    assert result.meta_iterations == finished.meta_iterations
    assert _outcome(tmp_path) == expected


def test_checkpoint_of_another_version_or_configuration_is_refused(tmp_path, capsys):
    config = _config()
    MetaTrainer(config, tmp_path).train(progress=False)
    newest, previous = checkpoint_files(tmp_path)
    payload = serialization.msgpack_restore(newest.read_bytes())
    newest.write_bytes(serialization.msgpack_serialize({**payload, "format_version": 999}))
    other = config.replace(learning_rate=0.5)
    before = {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()}
    with pytest.warns(UserWarning) as warned, pytest.raises(L2OError, match="no usable checkpoint"):
        MetaTrainer(other, tmp_path).train(progress=False, resume=True)
    err = " ".join(str(warning.message) for warning in warned)
    assert "format version 999" in err and "another configuration" in err
    assert before == {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()}  # nothing lost


def test_checkpoint_without_a_setting_added_later_resumes(tmp_path):
    """A checkpoint written before a setting existed (its stored configuration lacks the key,
    and it holds no extra_states) still resumes: a setting added with a default cannot make the
    same run look like another."""
    def without_later_settings(payload: dict) -> None:
        stored = json.loads(payload["config"])
        del stored["strategy"]["repeat"], stored["problem"]["extra"], payload["extra_states"]
        payload["config"] = json.dumps(stored)

    expected, resumed = _resume_from_an_edited_checkpoint(tmp_path, without_later_settings)
    assert resumed == expected


def _resume_from_an_edited_checkpoint(run: Path, edit) -> tuple[dict, dict]:
    """A finished run's outcome, and the outcome of resuming it from its previous checkpoint
    after ``edit(payload)`` changed that checkpoint in place."""
    config = _config()
    MetaTrainer(config, run).train(progress=False)
    expected = _outcome(run)
    newest, previous = checkpoint_files(run)
    newest.unlink()
    payload = serialization.msgpack_restore(previous.read_bytes())
    edit(payload)
    previous.write_bytes(serialization.msgpack_serialize(payload))
    MetaTrainer(config, run).train(progress=False, resume=True)
    return expected, _outcome(run)


def test_run_directory_written_before_the_sections_resumes_and_evaluates(tmp_path, capsys):
    """A run of l2o 0.1 (flat config.json, checkpoints named by a hash), interrupted after epoch
    1 of 2, resumes to the theta that l2o 0.1's own uninterrupted run ended with, and evaluates."""
    run = tmp_path / "old"
    shutil.copytree(DATA / "run-format-1", run)
    assert main(["resume", str(run)]) == 0
    assert (run / "last" / THETA_FILE).read_bytes() == (DATA / "run-format-1-last-theta.msgpack").read_bytes()
    assert main(["evaluate", "--path", str(run), "--optimizer", "L2L,SGD", "--num_epochs", "4", "--tuning_epochs",
                 "2", "--tuning_grid", "0.01,1,3", "--out", str(tmp_path / "evaluation")]) == 0
    assert json.loads((tmp_path / "evaluation" / "results.json").read_text())["problem"] == "simple"
    capsys.readouterr()


def test_checkpoint_from_before_the_structure_witness_resumes(tmp_path):
    """Optimizer states gained a zero-size witness of the parameters' structure; checkpoints
    written without it still resume, to the same theta."""
    def without_witness(payload: dict) -> None:
        assert "structure" in payload["states"]["opt_state"]
        del payload["states"]["opt_state"]["structure"]

    expected, resumed = _resume_from_an_edited_checkpoint(tmp_path, without_witness)
    assert resumed == expected


def test_resume_errors_are_one_line(tmp_path, capsys):
    for argv, fragment in [
        (["resume", str(tmp_path / "missing")], "holds no config.json"),
        (["resume"], "the following arguments are required: path"),
    ]:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and fragment in err
    (tmp_path / "config.json").write_text("{not json")
    assert main(["resume", str(tmp_path)]) == 2
    assert "config.json is corrupted" in capsys.readouterr().err
