"""Task augmentation by reparameterization: the same function at corresponding points, other
gradients, scales at the level and in the range asked for."""

import jax
import numpy as np
import pytest

from l2o.config import TrainConfig
from l2o.errors import L2OError
from l2o.meta import MetaTrainer
from l2o.tasks import mlp_classifier, reparameterized


@pytest.fixture(scope="module")
def classifier():
    return mlp_classifier(layers=[6], dataset="digits", batch_size=16, activation="relu")


@jax.jit
def _both_sides(task, original, seed):
    """What the augmented and the original task compute at corresponding points: starts, and
    at another point the loss, gradient and test loss."""
    inst = task.sample(jax.random.fold_in(jax.random.PRNGKey(0), seed))
    inner_inst, scales = inst
    init_key, key = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(1), seed))
    start, original_start = task.init(init_key, inst), original.init(init_key, inner_inst)
    point = jax.tree.map(lambda q: q + 0.1, original_start)  # somewhere else than the start
    corresponding = jax.tree.map(lambda q, c: q / c, point, scales)
    augmented = (task.loss(corresponding, inst, key), jax.grad(task.loss)(corresponding, inst, key),
                 task.test_metrics(corresponding, inst)["test_loss"])
    plain = (original.loss(point, inner_inst, key), jax.grad(original.loss)(point, inner_inst, key),
             original.test_metrics(point, inner_inst)["test_loss"])
    return scales, (start, original_start), augmented, plain


@pytest.mark.parametrize("seed", range(6))
def test_the_augmented_task_is_the_same_function_at_corresponding_points(classifier, seed):
    """At p' = p / c the augmented loss equals the original loss at p, for the start and for
    any other point; its gradient is c times the original one (chain rule)."""
    task = reparameterized(classifier, (1e-3, 1e3))
    scales, (start, original_start), augmented, plain = _both_sides(task, classifier, seed)
    close = lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-7)
    jax.tree.map(lambda p, c, q: close(p * c, q), start, scales, original_start)
    close(augmented[0], plain[0])
    jax.tree.map(lambda g, c, h: close(g, c * h), augmented[1], scales, plain[1])
    close(augmented[2], plain[2])


@pytest.mark.parametrize("level", ["global", "tensor", "parameter", "none"])
def test_each_level_scales_what_it_says(classifier, level):
    task = reparameterized(classifier, (1e-2, 1e2), levels=[level])
    instances = [[np.log(np.asarray(c)) for c in jax.tree.leaves(task.sample(jax.random.PRNGKey(seed))[1])]
                 for seed in range(8)]
    logs = [log for instance in instances for log in instance]
    assert all(np.all(np.abs(log) <= np.log(1e2) + 1e-5) for log in logs)
    per_instance = [np.concatenate([np.ravel(log) for log in instance]) for instance in instances]
    if level == "none":
        assert all(np.all(log == 0) for log in logs)
    elif level == "global":  # one factor per instance, different between instances
        assert all(np.ptp(values) < 1e-5 for values in per_instance)
        assert np.std([values[0] for values in per_instance]) > 0.5
    elif level == "tensor":  # constant within each tensor, different across tensors
        assert all(np.ptp(log) < 1e-5 for log in logs) and np.std([log.flat[0] for log in logs]) > 0.5
    else:
        assert all(np.std(log) > 1.0 for log in logs if log.size > 10)


def test_levels_are_mixed_across_instances(classifier):
    """With every level allowed, a population sees each of them (one compiled program)."""
    task = reparameterized(classifier)
    draws = jax.jit(jax.vmap(task.sample))(jax.random.split(jax.random.PRNGKey(0), 64))[1]
    kernel = np.log(np.asarray(draws[0]["w"])).reshape(64, -1)
    bias = np.log(np.asarray(draws[-1]["b"])).reshape(64, -1)
    none = np.all(kernel == 0, axis=1)
    constant = (np.ptp(kernel, axis=1) < 1e-5) & ~none
    shared = constant & (np.abs(kernel[:, 0] - bias[:, 0]) < 1e-5)  # global: every tensor the same factor
    varying = np.ptp(kernel, axis=1) > 1.0
    assert none.any() and shared.any() and (constant & ~shared).any() and varying.any()


def test_bad_augmentation_settings_are_refused(classifier):
    with pytest.raises(L2OError, match="low <= high"):
        reparameterized(classifier, (10.0, 1.0))
    with pytest.raises(L2OError, match="unknown reparameterization level"):
        reparameterized(classifier, levels=["layer"])
    with pytest.raises(L2OError, match="config key augmentation/levels"):
        TrainConfig.from_dict({"augmentation": {"levels": []}})


def test_meta_training_sees_augmented_tasks_and_validates_on_plain_ones():
    """The trainer reparameterizes what it trains on, not what it validates on (PES meta-training
    with augmentation runs in tests/test_image_families.py)."""
    config = TrainConfig(problem="mlp_classifier", problem_options={"dataset": "digits", "layers": [4],
                                                                    "batch_size": 16},
                         augmentation={"scale_range": [0.1, 10.0]}, num_steps=6, unroll_length=3)
    trainer = MetaTrainer(config)
    assert trainer.train_tasks[0].name == "mlp_classifier-reparameterized"
    assert trainer.task.name == "mlp_classifier" and trainer.validation.tasks[0] is trainer.task
