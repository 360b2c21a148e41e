"""The sectioned Keras-L2O configuration format: a sample with every section (tests/data/
sectioned.json, our own) translates setting by setting and runs end to end."""

import json
from pathlib import Path

import pytest

from l2o.cli import main
from l2o.config import TrainConfig
from l2o.errors import L2OError
from l2o.keras_l2o_format import SECTIONS, from_sectioned
from l2o.meta import MetaTrainer
from l2o.presets import preset_config
from l2o.train_settings import train_config

SAMPLE = Path(__file__).resolve().parent / "data" / "sectioned.json"


@pytest.fixture(scope="module")
def sample() -> dict:
    """A sectioned configuration that uses every section and most of their keys."""
    return json.loads(SAMPLE.read_text())


def test_the_sample_covers_every_section(sample):
    assert set(sample) == set(SECTIONS)


def test_the_sample_configuration_translates_setting_by_setting(sample):
    settings, directory = from_sectioned(sample)
    assert directory == "sectioned-run"
    assert settings["problem"] == "mlp_classifier"
    assert settings["problem_options"] == {"layers": [8], "dataset": "digits", "activation": "relu",
                                           "shuffle_buffer": 1024, "batch_size": 32}
    assert (settings["log_objective"], settings["scale_objective"], settings["max_multiplier"],
            settings["numerator_epsilon"], settings["loss_epsilon"]) == (False, True, 100, False, 1e-8)
    assert settings["learning_rate"] == 0.003 and settings["meta_betas"] == [0.85, 0.99]
    assert settings["weighting"] == "sum"
    assert settings["teachers"] == [{"name": "Adam", "options": {"learning_rate": 0.01, "b1": 0.9, "b2": 0.999}}]
    assert settings["p_teacher"] == 1 and settings["imitation_learning_rate"] == 0.0005
    assert settings["horizon_unrolls"] == 2
    assert (settings["data_epochs"], settings["repeat"], settings["keep_optimizer_state"]) == (2, 1, True)
    assert (settings["strategy"], settings["evaluation_period"], settings["num_epochs"]) == ("simple", 2, 6)
    assert (settings["unroll_distribution"], settings["annealing_schedule"], settings["validation_steps"]) == (
        [4, 6], 0.3, 20)  # validation_unroll x depth
    assert settings["optimizer"] == "DM" and settings["optimizer_options"] == {"layers": [12]}
    config = preset_config(settings.pop("problem"), **settings)  # valid as a TrainConfig
    assert isinstance(config, TrainConfig) and config.imitation.p_teacher == 1.0


@pytest.mark.parametrize("change, fragment", [
    (lambda c: c.update(problems=[]), "non-empty list"),
    (lambda c: c["problems"].append({"target": "quadratic", "args": [3]}), "problems/1/args"),
    (lambda c: c.update(extra={}), "unknown section(s) extra"),
    (lambda c: c["loss_args"].update(use_log=True), "unknown key(s) loss_args/use_log"),
    (lambda c: c["network"].update(activation="relu"), "network/activation='relu' is not supported"),
    (lambda c: c.update(strategy_constructor="Annealing"), "choose Simple or CurriculumLearning"),
    (lambda c: c["training"].update(depth=-1), "training/depth must be an integer >= 0"),
    (lambda c: c["optimizer"].update(class_name="SGD"), "meta-optimizer is Adam"),
    (lambda c: c["training"]["teachers"][0]["config"].update(amsgrad=True), "unsupported key(s) amsgrad"),
])
def test_sectioned_mistakes_are_named(sample, change, fragment):
    config = json.loads(json.dumps(sample))
    change(config)
    with pytest.raises(L2OError) as error:
        from_sectioned(config)
    assert fragment in str(error.value)


def test_several_problems_become_extra_problems(sample):
    config = json.loads(json.dumps(sample))
    config["problems"].append({"target": "scaled_quadratic", "kwargs": {"num_dims": 3}})
    settings, _ = from_sectioned(config)
    assert settings["problem"] == "mlp_classifier"
    assert settings["extra_problems"] == [{"name": "scaled-quadratic", "options": {"num_dims": 3}}]


def test_curriculum_section_sets_truncation_lengths_and_depth(sample):
    config = json.loads(json.dumps(sample))
    config["strategy_constructor"] = "CurriculumLearning"
    config["strategy"] = {"epochs_per_period": 2, "schedule": {"base": 5, "power": 2}, "min_periods": 1,
                          "max_stages": 3}
    config["training"]["depth"] = 1
    settings, _ = from_sectioned(config)
    assert settings["curriculum_schedule"] == {"base": 5, "power": 2} and settings["unroll_length"] == 20
    assert settings["num_epochs"] == 2 * 1 * 3 and settings["horizon_unrolls"] == 1


def test_the_command_line_reads_the_sample_with_overrides_in_its_own_terms(sample, tmp_path):
    """What `l2o train sample.json KEY=VALUE ...` would train, without training it (the run
    itself is the slow test below and docs/RESULTS.md)."""
    path = tmp_path / "sample.json"
    path.write_text(json.dumps(sample))
    config, directory = train_config([str(path), "strategy/num_periods=2", "strategy/epochs_per_period=2"], {})
    assert directory == "sectioned-run" and config.run.num_epochs == 2 * 1 * 2
    assert config.optimizer.name == "DM" and config.imitation.teachers[0]["name"] == "Adam"
    assert MetaTrainer(config).task.name == "mlp_classifier"


@pytest.mark.slow
def test_sample_runs_through_train_and_resume(sample, tmp_path, monkeypatch, capsys):
    """The sample as written, shortened by overrides in its own terms, on the bundled digits data
    (evaluating the run it writes is evaluating any run: tests/test_cli.py)."""
    path = tmp_path / "sample.json"
    path.write_text(json.dumps(sample))
    monkeypatch.chdir(tmp_path)  # the sample's directory is relative
    assert main(["train", str(path), "strategy/num_periods=2", "strategy/epochs_per_period=2",
                 "strategy/unroll_distribution=5", "training/epochs=1", "problems/0/kwargs/batch_size=128"]) == 0
    run = tmp_path / "sectioned-run"
    written = json.loads((run / "config.json").read_text())
    assert written["run"]["num_epochs"] == 4 and written["imitation"]["teachers"][0]["name"] == "Adam"
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("imitation_loss" in r for r in records)  # p_teacher 1 at the first period
    assert {r["validation_steps"] for r in records if "validation_steps" in r} == {20}
    assert main(["resume", str(run)]) == 0  # a finished run resumes to the same end
