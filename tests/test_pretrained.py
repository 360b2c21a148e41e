"""The optimizers shipped inside l2o (``l2o.pretrained``), over every shipped name: described in one
line, reproduced by a recipe that matches their files, loaded by name wherever a run directory is
taken (library, ``l2o evaluate``, ``l2o benchmark``), safe on any parameter tree, and training an
ordinary model; an unknown name is a one-line error listing the shipped ones."""

import json
import os
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen as nn

import l2o
from l2o import cli
from l2o.saved_optimizer import save_optimizer

NAMES = l2o.pretrained.names()


def test_l2o_ships_an_optimizer():
    assert NAMES


@pytest.mark.parametrize("name", NAMES)
def test_a_shipped_optimizer_is_described_in_one_line(name):
    description = l2o.pretrained.describe(name)
    assert description.strip() and "\n" not in description and len(description) < 400


@pytest.mark.parametrize("name", NAMES)
def test_a_shipped_optimizer_is_what_its_recipe_trains(name):
    """Architecture, hyperparameters, problem and budget in its files are the recipe's."""
    recipe = json.loads(l2o.pretrained.recipe(name).read_text())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a shipped optimizer loads without a warning
        lopt, _ = l2o.load(name)
    info = l2o.training_info(name)
    assert info.architecture == recipe["optimizer"]["name"] == lopt.name
    recipe_optimizer = l2o.get_learned(recipe["optimizer"]["name"], **recipe["optimizer"]["options"])
    # (hyperparameters added to the architecture after the weights were saved take their defaults)
    assert l2o.optimizers.hyperparameters(lopt) == l2o.optimizers.hyperparameters(recipe_optimizer)
    assert info.trained_on == (recipe["problem"]["name"],)
    assert info.num_epochs == recipe["run"]["num_epochs"] and 0 < info.epoch <= info.num_epochs
    assert info.num_steps == recipe["strategy"]["num_steps"]


class _MLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(10)(nn.relu(nn.Dense(32)(x)))


@pytest.mark.parametrize("name", NAMES)
def test_a_shipped_optimizer_trains_a_flax_model_in_a_plain_optax_loop(name):
    """200 steps on scikit-learn's digits take the training loss below a third of where it started
    (about log 10 = 2.3) and below where optax's Adam at its default rate (1e-3) takes it in the
    same loop, from the same initialization on the same minibatches."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x, y = jnp.asarray(x / 16.0, jnp.float32), jnp.asarray(y)
    model = _MLP()
    params = model.init(jax.random.PRNGKey(0), x[:1])

    def loss(params, xb, yb):
        return optax.softmax_cross_entropy_with_integer_labels(model.apply(params, xb), yb).mean()

    def trained(tx):
        @jax.jit
        def train(params):
            def step(carry, key):
                params, state = carry
                batch = jax.random.choice(key, len(x), (64,))
                updates, state = tx.update(jax.grad(loss)(params, x[batch], y[batch]), state, params)
                return (optax.apply_updates(params, updates), state), None

            keys = jax.random.split(jax.random.PRNGKey(1), 200)
            return jax.lax.scan(step, (params, tx.init(params)), keys)[0][0]

        return float(loss(train(params), x, y))

    start, end, adam = float(loss(params, x, y)), trained(l2o.load_optax(name)), trained(optax.adam(1e-3))
    assert end < start / 3 and end < adam, (start, end, adam)


@pytest.mark.parametrize("name", NAMES)
def test_no_parameter_tree_ends_with_nan_parameters(name):
    """Integer, ``None`` and zero-size leaves, bfloat16 leaves, scales 1e30 and 1e-30, and a step
    with a NaN gradient: every float parameter stays finite and keeps its dtype, the state is
    float32, the NaN step is skipped and counted (at scale 1e30 the others may be too: squared
    gradients overflow float32)."""
    tx = l2o.load_optax(name)

    def loss(p):
        return (jnp.sum(jnp.square(p["w"])) + jnp.sum(p["b"].astype(jnp.float32))
                + jnp.sum(p["empty"]) + p["poison"] * jnp.sum(p["w"]))

    @jax.jit
    def run(params):
        state = tx.init(params)
        for poison in (0.0, jnp.nan, 0.0):
            grads = jax.grad(loss, allow_int=True)({**params, "poison": jnp.float32(poison)})
            updates, state = tx.update({key: grads[key] for key in params}, state, params)
            params = optax.apply_updates(params, updates)
        return params, state

    for scale in (1e30, 1e-30, 1.0):
        params = {"w": jnp.full((3, 4), scale, jnp.float32), "b": jnp.full((4,), min(scale, 1e3), jnp.bfloat16),
                  "count": jnp.arange(3), "none": None, "empty": jnp.zeros((0, 5)), "no_columns": jnp.zeros((5, 0)),
                  "no_channels": jnp.zeros((3, 3, 0, 2))}
        final, state = run(params)
        assert jax.tree.map(lambda x: (x.shape, x.dtype), final) == jax.tree.map(lambda x: (x.shape, x.dtype), params)
        assert all(np.all(np.isfinite(np.asarray(final[key], np.float32))) for key in ("w", "b")), (scale, final)
        np.testing.assert_array_equal(final["count"], params["count"])
        assert final["none"] is None
        skipped = int(optax.tree_utils.tree_get(state, "skipped"))
        assert skipped == 1 if scale == 1.0 else skipped >= 1  # at 1e30, squared gradients overflow float32
        floats = [leaf for leaf in jax.tree.leaves(state) if jnp.issubdtype(leaf.dtype, jnp.floating)]
        assert {leaf.dtype for leaf in floats} == {jnp.dtype(jnp.float32)}


def test_an_unknown_name_is_a_one_line_error_listing_the_shipped_ones():
    for call in (l2o.load, l2o.load_optax, l2o.training_info, l2o.pretrained.describe):
        with pytest.raises(l2o.L2OError, match=", ".join(NAMES)) as error:
            call("no-such-optimizer")
        assert "\n" not in str(error.value)


def test_a_path_that_exists_is_read_before_a_shipped_name(tmp_path, monkeypatch):
    """A folder in the working directory named like a shipped optimizer is what gets loaded."""
    monkeypatch.chdir(tmp_path)
    lopt = l2o.get_learned("DM")
    save_optimizer(tmp_path / NAMES[0], lopt, lopt.init(jax.random.PRNGKey(0)))
    assert l2o.load(NAMES[0])[0].name == "DM" != l2o.load(l2o.pretrained.weights_dir(NAMES[0]))[0].name


def _cli(argv, capsys):
    code = cli.main(argv)
    return code, capsys.readouterr()


def test_the_cli_lists_the_shipped_optimizers(capsys):
    code, out = _cli(["pretrained"], capsys)
    assert code == 0
    for name in NAMES:
        assert f"{name}: {l2o.pretrained.describe(name)}" in out.out and str(l2o.pretrained.recipe(name)) in out.out


def test_the_cli_takes_a_shipped_name_and_writes_outside_the_package(tmp_path, monkeypatch, capsys):
    """`l2o evaluate --path NAME` writes under runs/ of the working directory, never into the
    installed package; `l2o benchmark` with an unknown name is exit status 2 and one line."""
    monkeypatch.chdir(tmp_path)
    before = sorted(os.listdir(l2o.pretrained.weights_dir(NAMES[0])))
    code, _ = _cli(["evaluate", "--path", NAMES[0], "--problem", "quadratic", "--optimizer", "L2L",
                    "--num_steps", "10", "--num_epochs", "2"], capsys)
    assert code == 0
    results = json.loads((tmp_path / "runs" / f"evaluate-{NAMES[0]}-quadratic" / "results.json").read_text())
    assert "L2L" in json.dumps(results)
    assert sorted(os.listdir(l2o.pretrained.weights_dir(NAMES[0]))) == before
    code, out = _cli(["benchmark", "no-such-optimizer", "--tasks", "quadratic"], capsys)
    assert code == 2 and ", ".join(NAMES) in out.err and out.err.count("\n") == 1
