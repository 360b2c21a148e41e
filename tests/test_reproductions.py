"""The papers' experiments, end to end (slow: run with L2O_RUN_SLOW=1; docs/RESULTS.md)."""

import pytest

from l2o.evaluate import Tuned, evaluate
from l2o.meta import MetaTrainer
from l2o.optimizers import BASELINES
from l2o.presets import preset_config

pytestmark = pytest.mark.slow


def _compare(config, num_instances=100):
    trainer = MetaTrainer(config)
    result = trainer.train(progress=False)
    optimizers = {"L2L": trainer.lopt.transform(result.theta)}
    optimizers.update({name: Tuned(make) for name, make in BASELINES.items()})
    return evaluate(trainer.task, optimizers, num_steps=config.strategy.num_steps, num_instances=num_instances)


def test_notebook_scaled_quadratic_reaches_1e_minus_20():
    config = preset_config("scaled-quadratic", num_epochs=15000, learning_rate=1e-3,
                           evaluation_period=1000, evaluation_epochs=200)
    evaluation = _compare(config)
    learned = evaluation.results["L2L"].mean_log10_final
    assert learned <= -20
    assert all(learned < r.mean_log10_final for name, r in evaluation.results.items() if name != "L2L")


def test_paper_quadratic_beats_every_tuned_baseline():
    config = preset_config("quadratic", num_epochs=300, n_samplings=8, evaluation_period=20,
                           evaluation_epochs=100)
    evaluation = _compare(config)
    learned = evaluation.results["L2L"].log10_mean_final
    assert learned < -0.7
    for name, result in evaluation.results.items():
        if name != "L2L":
            assert learned < result.log10_mean_final, name
