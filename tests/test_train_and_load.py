"""Meta-training improves the optimizer; what it saves loads back and trains a model with optax."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import l2o
from l2o.errors import L2OError
from l2o.io import atomic_write
from l2o.meta import MetaTrainer
from l2o.presets import preset_config
from l2o.saved_optimizer import save_optimizer


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("run")
    config = preset_config(
        "quadratic", problem_options={"batch_size": 16}, num_epochs=12, n_samplings=4,
        evaluation_period=4, log_period=4, evaluation_epochs=16, learning_rate=3e-3,
    )
    trainer = MetaTrainer(config, path)
    result = trainer.train(progress=False)
    return path, trainer, result


def test_meta_training_lowers_the_validation_loss(trained_run):
    _, trainer, result = trained_run
    initial = result.history[0]["validation"]
    assert result.best_score < initial - 0.2
    assert result.best_score == pytest.approx(trainer.validate(result.theta), abs=1e-6)


def test_run_directory_holds_config_metrics_and_best(trained_run):
    path, trainer, result = trained_run
    config = json.loads((path / "config.json").read_text())
    assert config["problem"]["name"] == "quadratic" and config["run"]["num_epochs"] == 12
    events = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]
    assert events == result.history
    lopt, theta = l2o.load(path)
    assert lopt == trainer.lopt
    jax.tree.map(np.testing.assert_array_equal, theta, jax.device_get(result.theta))


def test_load_optax_trains_a_model_in_a_plain_optax_loop(trained_run):
    path, _, _ = trained_run
    optimizer = l2o.load_optax(path)
    key_x, key_w = jax.random.split(jax.random.PRNGKey(0))
    inputs = jax.random.normal(key_x, (64, 5))
    targets = inputs @ jax.random.normal(key_w, (5, 1))
    params = {"w": jnp.zeros((5, 1)), "b": jnp.zeros((1,))}

    def loss_fn(params):
        return jnp.mean((inputs @ params["w"] + params["b"] - targets) ** 2)

    @jax.jit
    def train_step(params, opt_state):
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    opt_state = optimizer.init(params)
    start = float(loss_fn(params))
    for _ in range(100):
        params, opt_state, loss = train_step(params, opt_state)
    assert float(loss_fn(params)) < 0.5 * start


def test_corrupted_or_missing_checkpoints_are_refused(tmp_path, trained_run):
    path, trainer, result = trained_run
    saved = tmp_path / "saved"
    save_optimizer(saved, trainer.lopt, result.theta)
    theta_file = saved / "theta.msgpack"
    theta_file.write_bytes(theta_file.read_bytes()[:50])
    with pytest.raises(L2OError, match="corrupted"):
        l2o.load(saved)
    (saved / "optimizer.json").write_text("{not json")
    with pytest.raises(L2OError, match="corrupted"):
        l2o.load(saved)
    with pytest.raises(L2OError, match="is not a saved optimizer"):
        l2o.load(tmp_path)
    with pytest.raises(L2OError, match="does not exist"):
        l2o.load(tmp_path / "missing")


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "file.json"
    atomic_write(target, "old")


    with pytest.raises(TypeError):
        atomic_write(target, 12345)  # not bytes or str: fails mid-write
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.json"]


def test_meta_training_on_a_task_object_equals_training_on_its_name():
    """MetaTrainer(tasks=[...]) trains on the given task family: a hand-made copy of the 16-problem
    quadratic (its own sample/init/loss) ends with exactly the theta of the named problem."""
    from l2o.tasks import Task, quadratic

    named = quadratic(batch_size=16)
    own = Task("my-quadratic", lambda key: named.sample(key), lambda key, inst: named.init(key, inst),
               lambda params, inst, key: named.loss(params, inst, key))
    config = preset_config("quadratic", problem_options={"batch_size": 16}, num_epochs=2, n_samplings=2,
                           unroll_length=5, num_steps=10, evaluation_epochs=4)
    by_name = MetaTrainer(config).train(progress=False)
    by_task = MetaTrainer(config, tasks=[own]).train(progress=False)
    jax.tree.map(np.testing.assert_array_equal, by_task.last_theta, by_name.last_theta)
    assert by_task.best_score == by_name.best_score
    with pytest.raises(L2OError, match="one task per problem"):
        MetaTrainer(config, tasks=[own, own])


def test_validation_problems_are_validated_on_instead_of_the_trained_ones():
    """With validation_problems, validation scores those families (their mean; the same instances
    and score as a run trained on one of them) and the trained family not at all; a problem name
    that does not exist is a one-line error."""
    settings = dict(num_epochs=1, num_steps=10, unroll_length=5, n_samplings=2, evaluation_epochs=3)
    small, other = {"num_dims": 3}, {"num_dims": 5, "batch_size": 8}
    held_out = preset_config("quadratic", **settings, validation_problems=[
        {"name": "quadratic", "options": small}, {"name": "quadratic", "options": other}])
    theta = MetaTrainer(held_out).lopt.init(jax.random.PRNGKey(0))
    trained_on = lambda options: MetaTrainer(preset_config("quadratic", **settings, problem_options=options))
    expected = [trained_on(small).validate(theta), MetaTrainer(preset_config(
        "quadratic", **settings, problem_options=small, extra_problems=[{"name": "quadratic", "options": other}]
    )).validation_scores(theta)[1]]
    # One score per validation family, none for the trained one (10 dimensions, batch 128).
    np.testing.assert_allclose(MetaTrainer(held_out).validation_scores(theta), expected, rtol=1e-6)
    with pytest.raises(L2OError, match="unknown problem 'quadratc'"):
        preset_config("quadratic", validation_problems=[{"name": "quadratc", "options": {}}])
