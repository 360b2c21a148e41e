"""`l2o progress RUN` reads a run's metrics as written by the trainer: epochs, validations and
their best, meta-training time summed over sittings (a resumed run's clock restarts), and a plot;
a folder without a run is a one-line error."""

import json

from l2o.cli import main
from l2o.config import TrainConfig
from l2o.io import write_json
from l2o.run_directory import RunDirectory
from l2o.run_progress import PLOT_FILE, read_progress


def _run(tmp_path):
    run = RunDirectory(tmp_path / "run")
    run.path.mkdir()
    config = TrainConfig().to_dict()
    config["run"]["num_epochs"] = 30
    write_json(run.config, config)
    events = [{"epoch": 0, "validation": 0.5, "validation_steps": 100}]
    events += [{"epoch": e, "seconds": 10.0 * e, "meta_loss": 3.0 - 0.1 * e} for e in range(1, 11)]
    events += [{"epoch": 10, "validation": -0.2, "validation_steps": 100}]
    # a second sitting, resumed from the checkpoint of epoch 10: its clock starts again
    events += [{"epoch": e, "seconds": 4.0 * (e - 10), "meta_loss": 2.0} for e in range(11, 21)]
    events += [{"epoch": 20, "validation": -0.1, "validation_steps": 100}]
    run.metrics.write_text("".join(json.dumps(event) + "\n" for event in events))
    return run


def test_progress_is_read_from_the_metrics(tmp_path):
    progress = read_progress(_run(tmp_path).path)
    assert (progress.epochs, progress.num_epochs) == (20, 30)
    assert progress.validations == [(0, 0.5), (10, -0.2), (20, -0.1)] and progress.best == (10, -0.2)
    assert progress.seconds == 100.0 + 40.0
    assert progress.meta_losses[0] == (1, 2.9) and len(progress.meta_losses) == 20


def test_the_command_prints_the_curve_and_plots_it(tmp_path, capsys):
    run = _run(tmp_path)
    assert main(["progress", str(run.path)]) == 0
    out = capsys.readouterr().out
    assert "20 of 30 epochs, 140 s" in out and "validation   -0.2000  best" in out
    assert (run.path / PLOT_FILE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_folder_without_a_run_is_a_one_line_error(tmp_path, capsys):
    assert main(["progress", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "holds no metrics.jsonl" in err and "\n" not in err
