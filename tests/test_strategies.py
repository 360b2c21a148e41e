"""Strategies (what each period trains on) and imitation of hand-designed teachers."""

import dataclasses

import jax
import numpy as np
import pytest

from l2o.config import StrategyConfig, TrainConfig
from l2o.errors import L2OError
from l2o.meta import MetaTrainer
from l2o.meta.strategies import FIRST_STAGE, STRATEGIES, Curriculum, Stage, epoch_iterations, make_strategy, plan
from l2o.tasks import get_task


def _plan(config: TrainConfig, period: int, stage: Stage = FIRST_STAGE):
    return plan(config.strategy, config.imitation, config.run.seed, period, stage)


def after_validation(config: TrainConfig, stage: Stage, improved: bool):
    return make_strategy(config.strategy).after_validation(stage, improved)


def curriculum_horizons(config: TrainConfig) -> list[int]:
    return Curriculum(config.strategy).stage_horizons


def test_unroll_distributions_and_annealing():
    fixed = TrainConfig(unroll_length=7, p_teacher=0.8, teachers=[{"name": "Adam", "options": {"learning_rate": 0.1}}],
                        annealing_schedule=0.5)
    assert [_plan(fixed, p, Stage(0, 0)).unroll_length for p in range(3)] == [7, 7, 7]
    np.testing.assert_allclose([_plan(fixed, p, Stage(0, 0)).p_teacher for p in range(3)],
                               0.8 * np.exp(-0.5 * np.arange(3)))
    listed = TrainConfig(unroll_distribution=[5, 10], annealing_schedule=[1.0, 0.25])
    assert [_plan(listed, p, Stage(0, 0))[:3] for p in range(3)] == [(5, 100, 1.0), (10, 100, 0.25), (10, 100, 0.25)]
    geometric = TrainConfig(unroll_distribution=0.05, seed=3)
    lengths = [_plan(geometric, p, Stage(0, 0)).unroll_length for p in range(2000)]
    assert lengths == [_plan(geometric, p, Stage(0, 0)).unroll_length for p in range(2000)]  # reproducible
    assert 1 <= min(lengths) and max(lengths) <= 100  # clipped to the horizon
    assert np.mean(lengths) == pytest.approx(np.mean(np.minimum(np.random.default_rng(0).geometric(0.05, 20000), 100)),
                                             rel=0.05)
    depth = TrainConfig(unroll_distribution=[4, 6], horizon_unrolls=3, validation_steps=50)
    assert [_plan(depth, p, Stage(0, 0)) for p in range(2)] == [(4, 12, 0.0, 50), (6, 18, 0.0, 50)]


def test_an_epoch_is_repeat_runs_or_data_epochs_passes():
    """Keras L2O's training/repeat (runs per epoch) and training/epochs (passes over the data)."""
    current = _plan(TrainConfig(unroll_length=30), 0)  # horizon 100: 4 truncations per run
    assert epoch_iterations(TrainConfig(unroll_length=30).strategy, current, None) == 4
    assert epoch_iterations(TrainConfig(unroll_length=30, repeat=3).strategy, current, None) == 12
    passes = TrainConfig(unroll_length=30, data_epochs=2)
    assert epoch_iterations(passes.strategy, current, steps_per_epoch=469) == 32  # ceil(2 * 469 / 30)
    assert epoch_iterations(passes.strategy, current, steps_per_epoch=None) == 4  # a full-batch task


def test_a_classifiers_epoch_is_one_pass_over_its_training_split():
    task = get_task("mlp_classifier", dataset="digits", batch_size=100)
    assert task.steps_per_epoch == -(-1437 // 100)  # digits: 1,437 training images


def test_training_runs_the_epoch_length_it_plans():
    """A minibatch task of 15 steps per epoch: ``data_epochs=1`` with truncations of 5 is 3
    meta-iterations per epoch; a full-batch task runs ``repeat`` inner runs per epoch."""
    common = dict(problem="quadratic", num_epochs=2, num_steps=10, unroll_length=5, n_samplings=2,
                  evaluation_epochs=2, evaluation_period=2, log_period=2)
    minibatch = dataclasses.replace(get_task("quadratic"), steps_per_epoch=15)  # as a dataset of 15 batches
    trained = MetaTrainer(TrainConfig(data_epochs=1, **common), tasks=[minibatch]).train(progress=False)
    assert trained.meta_iterations == 2 * 3  # ceil(15 / 5) per epoch
    repeated = MetaTrainer(TrainConfig(repeat=2, data_epochs=1, **common))
    assert repeated.train(progress=False).meta_iterations == 2 * 2 * 2  # full batch: data_epochs ignored


def test_several_problems_are_trained_in_turn():
    common = dict(problem="quadratic", num_epochs=2, num_steps=10, unroll_length=5, n_samplings=2,
                  evaluation_epochs=3, evaluation_period=2, log_period=2)
    both = MetaTrainer(TrainConfig(extra_problems=[{"name": "scaled-quadratic", "options": {"num_dims": 3}}],
                                   **common))
    theta = both.lopt.init(jax.random.PRNGKey(0))
    scores = both.validation_scores(theta)
    assert scores[0] == MetaTrainer(TrainConfig(**common)).validate(theta)  # the first problem's is unchanged
    assert scores[1] != scores[0] and both.validate(theta) == pytest.approx(np.mean(scores))
    result = both.train(progress=False)
    assert result.meta_iterations == 2 * (2 + 2)  # per epoch, one run of 2 truncations on each problem
    validations = [e for e in result.history if "validation" in e]
    assert all(len(e["validation_by_problem"]) == 2 for e in validations)
    assert validations[-1]["validation"] == pytest.approx(np.mean(validations[-1]["validation_by_problem"]))


def test_curriculum_stages_advance_when_validation_stops_improving():
    config = TrainConfig(strategy="curriculum", curriculum_schedule={"base": 50, "power": 2.0}, max_stages=3,
                         min_periods=2, unroll_length=10)
    assert curriculum_horizons(config) == [50, 100, 200]
    assert _plan(config, 0, Stage(0, 0))[1:] == (50, 0.0, 100)  # validated at the next stage's horizon
    assert _plan(config, 5, Stage(2, 0))[1:] == (200, 0.0, 200)
    stage = Stage(0, 0)
    stage, changed = after_validation(config, stage, improved=False)
    assert stage == Stage(0, 1) and not changed  # fewer than min_periods
    stage, changed = after_validation(config, stage, improved=True)
    assert stage == Stage(0, 2) and not changed  # still improving
    stage, changed = after_validation(config, stage, improved=False)
    assert stage == Stage(1, 0) and changed
    last = Stage(2, 5)
    assert after_validation(config, last, improved=False) == (Stage(2, 6), False)  # the last stage stays
    listed = TrainConfig(strategy="curriculum", curriculum_schedule=[10, 30, 60, 90], max_stages=2, unroll_length=5)
    assert curriculum_horizons(listed) == [10, 30]


def test_curriculum_stage_ends_after_max_periods_even_while_improving():
    config = TrainConfig(strategy="curriculum", curriculum_schedule=[10, 20, 40], min_periods=1, max_periods=2,
                         unroll_length=5)
    stage, changes = Stage(0, 0), []
    for _ in range(7):  # validation improves every time
        stage, changed = after_validation(config, stage, improved=True)
        changes.append(changed)
    assert changes == [False, True, False, True, False, False, False]
    assert stage == Stage(2, 3)  # the last stage never ends
    uncapped = TrainConfig(strategy="curriculum", curriculum_schedule=[10, 20, 40], unroll_length=5)
    assert after_validation(uncapped, Stage(0, 5), improved=True) == (Stage(0, 6), False)
    with pytest.raises(L2OError, match="max_periods"):
        TrainConfig(strategy="curriculum", curriculum_schedule=[10, 20], min_periods=3, max_periods=2)


def test_curriculum_training_follows_the_schedule(tmp_path):
    """With one period per stage (max_periods=1) the horizon must move from 10 to 20 after the
    first period, whatever the validation does."""
    config = TrainConfig(problem="quadratic", strategy="curriculum", curriculum_schedule=[10, 20], num_epochs=4,
                         max_periods=1, unroll_length=5, n_samplings=2, evaluation_epochs=4, evaluation_period=1,
                         log_period=1)
    result = MetaTrainer(config, tmp_path).train(progress=False)
    assert [e["epoch"] for e in result.history if "stage" in e] == [1]
    assert [(e["epoch"], e["horizon"]) for e in result.history if "horizon" in e] == [
        (1, 10), (2, 20), (3, 20), (4, 20)]
    assert all(e["validation_steps"] == 20 for e in result.history if "validation_steps" in e)


def test_imitation_of_sgd_recovers_its_learning_rate():
    """A linear optimizer ``u = k g + b`` imitating SGD at 0.05 must learn k = -0.05, b = 0."""
    config = TrainConfig(
        problem="scaled-quadratic", optimizer_options={"layers": [], "preprocess": "none", "output_scale": 1.0},
        num_epochs=40, num_steps=20, unroll_length=5, n_samplings=16, evaluation_epochs=4, evaluation_period=40,
        log_period=40, teachers=[{"name": "SGD", "options": {"learning_rate": 0.05}}], p_teacher=1.0,
        annealing_schedule=0.0, imitation_learning_rate=0.05,
    )
    result = MetaTrainer(config).train(progress=False)
    dense = result.last_theta["params"]["Dense_0"]
    assert float(dense["kernel"][0, 0]) == pytest.approx(-0.05, abs=2e-3)
    assert abs(float(dense["bias"][0])) < 1e-3
    assert all("meta_loss" not in e for e in result.history)  # p_teacher 1: imitation steps only


@pytest.mark.parametrize("values, fragment", [
    ({"p_teacher": 0.5}, "p_teacher > 0 needs teachers"),
    ({"extra_problems": [{"name": "mnsit", "options": {}}]}, "unknown problem 'mnsit'"),
    ({"extra_problems": [{"name": "quadratic"}]}, "config key extra_problems"),
    ({"teachers": [{"name": "Adam", "options": {}}], "estimator": "pes"}, "needs estimator=truncated"),
    ({"teachers": [{"name": "Adam"}]}, "config key teachers"),
    ({"strategy": "curriculum"}, "needs max_stages > 0"),
    ({"unroll_distribution": 0.0}, "config key unroll_distribution"),
    ({"annealing_schedule": [1.5]}, "config key annealing_schedule"),
])
def test_strategy_and_imitation_settings_are_validated(values, fragment):
    with pytest.raises(L2OError, match=fragment):
        TrainConfig.from_dict(values)


def test_teacher_options_are_checked_when_training_starts():
    config = TrainConfig(teachers=[{"name": "Adam", "options": {"lr": 0.1}}], num_steps=20)
    with pytest.raises(L2OError, match="bad options .* for teacher Adam; valid options: learning_rate"):
        MetaTrainer(config)


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_every_registered_strategy_keeps_the_strategy_contract(name):
    """Each STRATEGIES entry is accepted by the configuration, describes itself for --help, and
    plans positive horizons that a truncation fits into, at every stage it moves to."""
    config = TrainConfig(strategy=name, curriculum_schedule=[10, 20, 40], unroll_length=5, num_steps=30)
    strategy = make_strategy(config.strategy)
    assert STRATEGIES[name].__doc__ and f"{name}: " in StrategyConfig.model_fields["name"].description
    stage = Stage(0, 0)
    for period in range(6):
        current = _plan(config, period, stage)
        assert 1 <= current.unroll_length <= current.horizon and current.validation_steps >= 1
        stage, changed = strategy.after_validation(stage, improved=period % 2 == 0)
        assert isinstance(changed, bool) and stage.index >= 0


def test_every_strategy_class_is_registered():
    """A strategy written in l2o.meta.strategies but missing from STRATEGIES could never be
    chosen: every class there with ``horizons`` and ``after_validation`` must be registered."""
    import inspect

    import l2o.meta.strategies as module

    written = {cls for _, cls in inspect.getmembers(module, inspect.isclass)
               if cls.__module__ == module.__name__ and cls is not module.Strategy
               and all(hasattr(cls, name) for name in ("horizons", "after_validation"))}
    assert written == set(STRATEGIES.values())


def test_a_problem_grid_is_one_family_per_combination_and_evaluation_uses_the_first(tmp_path):
    from l2o.evaluation_plan import EvaluationRequest, plan_evaluation
    from l2o.io import write_json
    from l2o.run_directory import RunDirectory

    config = TrainConfig(problem="quadratic", problem_options={"batch_size": 4},
                         problem_grid={"num_dims": [2, 3], "stddev": [0.1, 1.0]},
                         extra_problems=[{"name": "simple", "options": {}}])
    assert config.problems() == [
        ("quadratic", {"batch_size": 4, "num_dims": 2, "stddev": 0.1}),
        ("quadratic", {"batch_size": 4, "num_dims": 2, "stddev": 1.0}),
        ("quadratic", {"batch_size": 4, "num_dims": 3, "stddev": 0.1}),
        ("quadratic", {"batch_size": 4, "num_dims": 3, "stddev": 1.0}),
        ("simple", {}),
    ]
    trainer = MetaTrainer(config)
    shapes = [jax.eval_shape(task.init, jax.random.PRNGKey(0), task.sample(jax.random.PRNGKey(0)))
              for task in trainer.tasks[:4]]
    assert [jax.tree.leaves(shape)[0].shape for shape in shapes] == [(4, 2), (4, 2), (4, 3), (4, 3)]
    write_json(RunDirectory(tmp_path).config, config.to_dict())
    plan = plan_evaluation(EvaluationRequest(optimizers=["Adam"], path=str(tmp_path), learning_rate=0.1))
    assert jax.tree.leaves(jax.eval_shape(plan.task.init, jax.random.PRNGKey(0),
                                          plan.task.sample(jax.random.PRNGKey(0))))[0].shape == (4, 2)
    with pytest.raises(L2OError, match="17 combinations"):
        TrainConfig.from_dict({"problem_grid": {"num_dims": list(range(17))}})
