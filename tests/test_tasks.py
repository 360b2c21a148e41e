"""Tasks compute the documented objectives, draw the documented distributions, and vmap."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from l2o.errors import L2OError
from l2o.tasks import draw_problems, get_task, mlp_classifier, quadratic, scaled_quadratic, simple


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
