"""Tasks compute the documented objectives, draw the documented distributions, and vmap."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from l2o.errors import L2OError
from l2o.tasks import (
    conv_classifier,
    draw_problems,
    get_task,
    mlp_classifier,
    quadratic,
    scaled_quadratic,
    simple,
    simple_multi,
    task_from_spec,
    tasks_from_specs,
)


def test_quadratic_matches_numpy():
    task = quadratic(num_dims=4, batch_size=3)
    key = jax.random.PRNGKey(0)
    inst = task.sample(key)
    params = task.init(jax.random.PRNGKey(1), inst)
    w, y, x = (np.asarray(a, np.float64) for a in (inst["w"], inst["y"], params["x"]))
    expected = np.mean([np.sum((w[b] @ x[b] - y[b]) ** 2) for b in range(3)])
    assert float(task.loss(params, inst, key)) == pytest.approx(expected, rel=1e-5)


def test_quadratic_distributions():
    task = quadratic()
    inst = task.sample(jax.random.PRNGKey(3))
    assert inst["w"].shape == (128, 10, 10) and inst["y"].shape == (128, 10)
    assert 0.0 <= float(inst["w"].min()) and float(inst["w"].max()) < 1.0
    assert float(inst["w"].mean()) == pytest.approx(0.5, abs=0.01)
    x = task.init(jax.random.PRNGKey(4), inst)["x"]
    assert x.shape == (128, 10)
    assert float(jnp.std(x)) == pytest.approx(0.01, rel=0.1)


def test_scaled_quadratic_matches_formula_and_ranges():
    task = scaled_quadratic(num_dims=2)
    insts, params, _ = draw_problems(task, jax.random.PRNGKey(0), 500)
    s, x = np.asarray(insts["scale"]), np.asarray(params["x"])
    assert s.min() >= 0.5 and s.max() < 1.5 and x.min() >= -1 and x.max() < 1
    losses = jax.vmap(task.loss, in_axes=(0, 0, None))(params, insts, jax.random.PRNGKey(0))
    np.testing.assert_allclose(losses, np.sum((s * x) ** 2, axis=1), rtol=1e-5)


def test_simple_is_x_squared_from_one():
    task = simple()
    params = task.init(jax.random.PRNGKey(0), task.sample(jax.random.PRNGKey(0)))
    assert float(params["x"]) == 1.0
    assert float(jax.grad(task.loss)({"x": jnp.array(3.0)}, {}, None)["x"]) == 6.0


def test_draw_problems_is_deterministic_and_distinct():
    task = quadratic(num_dims=3, batch_size=2)
    a = draw_problems(task, jax.random.PRNGKey(7), 5)
    b = draw_problems(task, jax.random.PRNGKey(7), 5)
    np.testing.assert_array_equal(a[0]["w"], b[0]["w"])
    assert len({float(w.sum()) for w in a[0]["w"]}) == 5


def test_mlp_initial_loss_is_log_num_classes():
    task = mlp_classifier(layers=(20,), activation="sigmoid", batch_size=128)
    params = task.init(jax.random.PRNGKey(0), task.sample(jax.random.PRNGKey(0)))
    assert [p["w"].shape for p in params] == [(784, 20), (20, 10)]
    loss = task.loss(params, {}, jax.random.PRNGKey(1))
    assert float(loss) == pytest.approx(np.log(10), abs=0.01)


def test_unknown_problem_is_a_user_error():
    with pytest.raises(L2OError, match="unknown problem 'nope'.*quadratic"):
        get_task("nope")
    with pytest.raises(L2OError, match="num_dims must be a positive integer"):
        get_task("quadratic", num_dims=0)


def test_mlp_matches_numpy_forward_and_test_metrics():
    task = mlp_classifier(layers=(7, 5), activation="tanh", dataset="digits", batch_size=16, test_examples=50)
    params = task.init(jax.random.PRNGKey(0), {})
    params = jax.tree.map(lambda p: p * 30.0, params)  # leave the near-uniform regime
    assert [p["w"].shape for p in params] == [(64, 7), (7, 5), (5, 10)]
    from l2o.tasks.datasets import load_dataset

    data = load_dataset("digits")
    x = data.test_images[:50].reshape(50, -1).astype(np.float64)
    for layer in params[:-1]:
        x = np.tanh(x @ np.asarray(layer["w"], np.float64) + np.asarray(layer["b"], np.float64))
    logits = x @ np.asarray(params[-1]["w"], np.float64) + np.asarray(params[-1]["b"], np.float64)
    shifted = logits - logits.max(1, keepdims=True)
    log_probs = shifted - np.log(np.sum(np.exp(shifted), 1, keepdims=True))
    metrics = task.test_metrics(params, {})
    expected_loss = -np.mean(log_probs[np.arange(50), data.test_labels[:50]])
    assert float(metrics["test_loss"]) == pytest.approx(expected_loss, rel=1e-4)
    assert float(metrics["test_accuracy"]) == pytest.approx(np.mean(logits.argmax(1) == data.test_labels[:50]))


def test_minibatches_are_drawn_from_the_key():
    task = mlp_classifier(dataset="digits", batch_size=8)
    params = task.init(jax.random.PRNGKey(0), {})
    a, b = (float(task.loss(params, {}, jax.random.PRNGKey(k))) for k in (1, 2))
    assert a != b and float(task.loss(params, {}, jax.random.PRNGKey(1))) == a


@pytest.mark.parametrize("conv_impl", ["xla", "slices"])
def test_conv_classifier_matches_a_flax_network(conv_impl):
    import flax.linen as nn

    task = conv_classifier(conv_channels=(4, 3), linear_layers=(6,), dataset="digits", batch_size=8,
                           test_examples=20, conv_impl=conv_impl)
    params = task.init(jax.random.PRNGKey(0), {})
    params = jax.tree.map(lambda p: p * 20.0, params)
    assert [layer["w"].shape for layer in params["conv"]] == [(5, 5, 1, 4), (5, 5, 4, 3)]
    assert params["linear"][0]["w"].shape == (2 * 2 * 3, 6)  # 8x8 -> 4x4 -> 2x2

    class Reference(nn.Module):
        @nn.compact
        def __call__(self, x):
            for channels in (4, 3):
                x = nn.Conv(channels, (5, 5), padding="SAME", use_bias=False)(x)
                x = nn.BatchNorm(use_running_average=False, use_scale=False, epsilon=1e-3)(x)
                x = nn.max_pool(nn.relu(x), (2, 2), (2, 2), padding="SAME")
            x = x.reshape(x.shape[0], -1)
            x = nn.Dense(6, use_bias=False)(x)
            x = nn.relu(nn.BatchNorm(use_running_average=False, use_scale=False, epsilon=1e-3)(x))
            return nn.Dense(10)(x)

    names = [("Conv_0", "BatchNorm_0", params["conv"][0]), ("Conv_1", "BatchNorm_1", params["conv"][1]),
             ("Dense_0", "BatchNorm_2", params["linear"][0])]
    variables = {"params": {**{layer: {"kernel": p["w"]} for layer, _, p in names},
                            **{norm: {"bias": p["offset"]} for _, norm, p in names},
                            "Dense_1": {"kernel": params["output"]["w"], "bias": params["output"]["b"]}}}
    from l2o.tasks.datasets import load_dataset

    data = load_dataset("digits")
    logits, _ = Reference().apply(variables, data.test_images[:20], mutable=["batch_stats"])
    expected = np.mean(np.asarray(optax_xent(logits, data.test_labels[:20])))
    assert float(task.test_metrics(params, {})["test_loss"]) == pytest.approx(expected, rel=1e-4)


def optax_xent(logits, labels):
    import optax

    return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def test_simple_multi_has_one_parameter_per_coordinate():
    task = simple_multi(num_dims=3)
    params = task.init(jax.random.PRNGKey(0), {})
    assert sorted(params) == ["x_0", "x_1", "x_2"]
    assert float(task.loss({"x_0": 1.0, "x_1": 2.0, "x_2": -3.0}, {}, None)) == 14.0


def test_named_problems():
    assert get_task("simple-multi").name == "simple-multi"
    mnist_like = get_task("mnist", dataset="digits")
    assert [p["w"].shape for p in mnist_like.init(jax.random.PRNGKey(0), {})] == [(64, 20), (20, 10)]
    with pytest.raises(L2OError, match="unknown option\\(s\\) depth for problem 'mnist'; valid: layers"):
        get_task("mnist", depth=2)


def test_keras_l2o_problem_specs():
    seed_entry = {"target": "mlp_classifier", "args": [],
                  "kwargs": {"layers": [20], "dataset": "digits", "activation": "sigmoid",
                             "shuffle_buffer": 16384, "batch_size": 8}}
    (task,) = tasks_from_specs([seed_entry])
    assert [p["w"].shape for p in task.init(jax.random.PRNGKey(0), {})] == [(64, 20), (20, 10)]
    assert task_from_spec({"target": "quadratic", "args": [3]}).init(jax.random.PRNGKey(0), None)["x"].shape == (128, 3)
    with pytest.raises(L2OError, match="unknown problem target 'mlp'; choose one of: quadratic.*conv_classifier"):
        task_from_spec({"target": "mlp"})
    with pytest.raises(L2OError,
                       match="unknown option\\(s\\) width for target 'mlp_classifier'; valid: layers, activation"):
        task_from_spec({"target": "mlp_classifier", "kwargs": {"width": 3}})
    with pytest.raises(L2OError, match="unknown key\\(s\\) kwarg in problem spec"):
        task_from_spec({"target": "quadratic", "kwarg": {}})
    with pytest.raises(L2OError, match="non-empty list"):
        tasks_from_specs({"target": "quadratic"})


def test_random_scaling_keeps_the_start_and_rescales_gradients():
    from l2o.tasks import randomly_scaled

    task = get_task("quadratic", batch_size=4)
    scaled = randomly_scaled(task, 2.0)
    inst, scales = scaled.sample(jax.random.PRNGKey(0))
    c = np.asarray(scales["x"])
    assert c.shape == (4, 10) and np.all(np.abs(np.log(c)) <= 2.0) and np.log(c).std() > 0.5
    x0 = scaled.init(jax.random.PRNGKey(1), (inst, scales))["x"]
    key = jax.random.PRNGKey(2)
    original_x0 = task.init(jax.random.PRNGKey(1), inst)["x"]
    np.testing.assert_allclose(x0 * c, original_x0, rtol=1e-6)
    np.testing.assert_allclose(scaled.loss({"x": x0}, (inst, scales), key),
                               task.loss({"x": original_x0}, inst, key), rtol=1e-6)
    # Chain rule: the scaled problem's gradient is c times the original gradient at c * x.
    np.testing.assert_allclose(jax.grad(scaled.loss)({"x": x0}, (inst, scales), key)["x"],
                               c * jax.grad(task.loss)({"x": original_x0}, inst, key)["x"], rtol=1e-5)


@pytest.mark.parametrize("scaled", [False, True])
def test_a_task_passed_to_jit_is_an_input_not_a_constant(scaled):
    """A classifier's dataset reaches a jitted function as an argument: the compiled program
    holds no copy of it, the same program serves the task and a copy of it over other arrays,
    and the losses equal the eager ones."""
    from l2o.tasks import randomly_scaled

    task = mlp_classifier(layers=[5], dataset="digits", batch_size=16)
    if scaled:
        task = randomly_scaled(task, 1.0)
    inst = task.sample(jax.random.PRNGKey(0))
    params = task.init(jax.random.PRNGKey(1), inst)
    key = jax.random.PRNGKey(2)
    loss = jax.jit(lambda task, params: task.loss(params, inst, key))
    program = loss.lower(task, params).as_text()
    dataset_bytes = sum(leaf.nbytes for leaf in jax.tree.leaves(task.data))
    closed_over = jax.jit(lambda params: task.loss(params, inst, key)).lower(params).as_text()
    assert dataset_bytes > 400_000 and len(program) < dataset_bytes / 4 < len(closed_over)
    np.testing.assert_allclose(loss(task, params), task.loss(params, inst, key), rtol=1e-6)
    # Flattening and rebuilding keeps the static part equal (jit's cache hits) ...
    leaves, treedef = jax.tree.flatten(task)
    assert jax.tree.flatten(jax.tree.unflatten(treedef, leaves))[1] == treedef
    # ... and the rebuilt task reads the arrays it is given.
    shuffled = jax.tree.unflatten(treedef, [leaf[::-1] for leaf in leaves])
    traces = []

    def counted(task, params):  # runs once per trace: a retrace would append again
        traces.append(None)
        return task.loss(params, inst, key)

    counted_loss = jax.jit(counted)
    counted_loss(task, params)
    np.testing.assert_allclose(counted_loss(shuffled, params), shuffled.loss(params, inst, key), rtol=1e-6)
    assert len(traces) == 1
    assert not np.isclose(float(loss(shuffled, params)), float(loss(task, params)))


@pytest.mark.parametrize("sampler, args", [(jax.random.uniform, ()), (jax.random.normal, ()),
                                           (jax.random.randint, (0, 100))])
def test_flat_draws_equal_shaped_draws(sampler, args):
    """l2o.draws.draw (fast to compile) gives exactly the numbers of the direct draw."""
    from l2o.draws import draw

    key = jax.random.PRNGKey(7)
    for shape in [(4, 10, 10), (3, 5), (6,), ()]:
        np.testing.assert_array_equal(draw(sampler, key, shape, *args), sampler(key, shape, *args))
