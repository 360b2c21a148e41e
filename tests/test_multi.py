"""Multi-optimizer assignment: each group gets exactly its own optimizer's updates, learned
groups are meta-trained jointly, and assignments save, load and fail clearly."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import l2o
from l2o.errors import L2OError
from l2o.meta import MetaTrainer
from l2o.meta.truncated import truncated_bptt_loss
from l2o.meta.unroll import fresh_state
from l2o.optimizers import DM, Multi, get_learned, param_labels
from l2o.presets import preset_config
from l2o.saved_optimizer import save_optimizer
from l2o.tasks import Task, conv_classifier

SIMPLE_MULTI = preset_config("simple-multi").optimizer.options["groups"]


def test_each_group_gets_its_own_optimizers_updates():
    multi = Multi(groups=SIMPLE_MULTI)
    theta = multi.init(jax.random.PRNGKey(0))
    theta = jax.tree.map(lambda t: t + 0.3, theta)  # a non-trivial learned optimizer
    assert list(theta) == ["learned"]
    tx = multi.transform(theta)
    dm = DM(layers=(), preprocess="none", output_scale=0.01).transform(theta["learned"])
    adam = optax.adam(0.1)
    params = {"x_0": jnp.array(1.0), "x_1": jnp.array(1.0)}
    state, dm_state, adam_state = tx.init(params), dm.init(params["x_0"]), adam.init(params["x_1"])
    for step in range(5):
        grads = {"x_0": jnp.array(0.5 + step), "x_1": jnp.array(2.0 - step)}
        updates, state = tx.update(grads, state, params)
        expected_0, dm_state = dm.update(grads["x_0"], dm_state, params["x_0"])
        expected_1, adam_state = adam.update(grads["x_1"], adam_state, params["x_1"])
        np.testing.assert_allclose(updates["x_0"], expected_0, rtol=1e-6)
        np.testing.assert_allclose(updates["x_1"], expected_1, rtol=1e-6)
        params = optax.apply_updates(params, updates)


def test_cifar_multi_labels_kernels_and_the_rest():
    task = conv_classifier(conv_channels=(2, 2), linear_layers=(3,), dataset="digits")
    params = task.init(jax.random.PRNGKey(0), {})
    groups = preset_config("cifar-multi").optimizer.options["groups"]
    labels = param_labels(params, [(g["name"], g["pattern"]) for g in groups])
    assert [layer["w"] for layer in labels["conv"]] == ["conv", "conv"]
    assert [layer["offset"] for layer in labels["conv"]] == ["fc", "fc"]
    assert labels["linear"][0] == {"w": "fc", "offset": "fc"} and labels["output"] == {"w": "fc", "b": "fc"}


def _conv_shaped_task() -> Task:
    """A least-squares problem whose parameters are named like a convnet's (``conv/0/w`` a
    kernel, ``output`` a read-out), so that ``cifar-multi``'s groups match them."""

    def init(key, inst):
        key_conv, key_out = jax.random.split(key)
        return {"conv": [{"w": jax.random.normal(key_conv, (3, 3, 1, 2)), "b": jnp.zeros(2)}],
                "output": {"w": jax.random.normal(key_out, (2, 3)), "b": jnp.zeros(3)}}

    def loss(params, target, key):
        hidden = jnp.tanh(jnp.sum(params["conv"][0]["w"], axis=(0, 1, 2)) + params["conv"][0]["b"])
        return jnp.sum(jnp.square(hidden @ params["output"]["w"] + params["output"]["b"] - target))

    return Task("conv-shaped", lambda key: jax.random.normal(key, (3,)), init, loss)


def test_jointly_meta_trained_groups_both_receive_meta_gradients():
    task = _conv_shaped_task()
    multi = get_learned("Multi", **preset_config("cifar-multi").optimizer.options)
    theta = multi.init(jax.random.PRNGKey(0))
    loss = truncated_bptt_loss(task, multi, unroll_length=3, horizon=6)
    keys = jax.random.split(jax.random.PRNGKey(1), 2)
    states = jax.vmap(lambda k: fresh_state(task, multi.transform(theta), k))(keys)
    grads = jax.grad(lambda t: loss(t, states)[0])(theta)
    for group in ("conv", "fc"):
        assert float(optax.tree.norm(grads[group])) > 0.0


def test_unmatched_parameters_and_bad_groups_are_user_errors():
    multi = Multi(groups=[{"name": "a", "pattern": "x_0", "optimizer": "DM"}])
    with pytest.raises(L2OError, match="parameter 'x_1' matches no group pattern"):
        multi.transform(multi.init(jax.random.PRNGKey(0))).init({"x_0": jnp.zeros(()), "x_1": jnp.zeros(())})
    with pytest.raises(L2OError, match="unknown optimizer 'Adamax'"):
        Multi(groups=[{"name": "a", "pattern": ".*", "optimizer": "Adamax"}])
    with pytest.raises(L2OError, match="names must be unique"):
        Multi(groups=[{"name": "a", "pattern": "x", "optimizer": "DM"},
                      {"name": "a", "pattern": ".*", "optimizer": "SGD"}])
    with pytest.raises(L2OError, match="bad pattern"):
        Multi(groups=[{"name": "a", "pattern": "(", "optimizer": "DM"}])
    with pytest.raises(L2OError, match="needs options.learning_rate"):
        Multi(groups=[{"name": "a", "pattern": ".*", "optimizer": "SGD"}]).transform({})


def test_simple_multi_meta_trains_saves_and_loads(tmp_path):
    config = preset_config("simple-multi", num_epochs=20, evaluation_period=5, log_period=5)
    result = MetaTrainer(config, tmp_path / "run").train(progress=False)
    validations = [event["validation"] for event in result.history if "validation" in event]
    assert result.best_score < validations[0] - 0.2  # the learned coordinate improves
    lopt, theta = l2o.load(tmp_path / "run")
    assert lopt == Multi(groups=SIMPLE_MULTI)
    np.testing.assert_array_equal(jax.tree.leaves(theta)[0], jax.tree.leaves(result.theta)[0])
    tx = l2o.load_optax(tmp_path / "run")
    params = {"x_0": jnp.array(1.0), "x_1": jnp.array(1.0)}
    updates, _ = tx.update(jax.grad(lambda p: p["x_0"] ** 2 + p["x_1"] ** 2)(params), tx.init(params), params)
    assert float(updates["x_1"]) == pytest.approx(-0.1, rel=1e-4)  # Adam's first step is -lr * sign(g)
    save_optimizer(tmp_path / "copy", lopt, theta)
    assert l2o.load(tmp_path / "copy")[0] == lopt
