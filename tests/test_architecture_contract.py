"""Contract of every registered learned architecture (``l2o.optimizers.LEARNED``), run over the
registry so that a new entry is covered the day it is added (meta-gradients:
tests/test_architecture_meta_gradients.py):

* a donating train step (``jax.jit(step, donate_argnums=(0, 1))``) works from ``init``, on
  bfloat16 and float16 parameters: updates in the gradients' dtypes, state in float32;
* gradients shaped unlike the state's parameters raise, as optax's optimizers do;
* every hyperparameter is checked by type: a string where a number, bool or list belongs is a
  one-line :class:`L2OError`, never a silently different optimizer;
* its ``name`` is its registry key; ``init`` gives the same structure for every key; a saved
  optimizer loads back equal; it runs inside ``optax.chain`` and ``optax.multi_transform`` and
  steps a convnet; untrained, it does not diverge on the quadratic (DM excepted: the paper's initialization).
"""

import dataclasses
import typing

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers.architectures import EXAMPLE_OPTIONS, UNTRAINED_MAY_DIVERGE, untrained_losses
from helpers.architectures import build as _build

import l2o
from l2o.errors import L2OError
from l2o.optimizers import LEARNED, get_learned
from l2o.saved_optimizer import save_optimizer
from l2o.tasks import conv_classifier, get_task


def _params(dtype=jnp.float32):
    return {"w": jnp.linspace(-1.0, 1.0, 12, dtype=dtype).reshape(3, 4), "b": jnp.array([0.5, -0.2, 0.1, 0.0], dtype)}


def _loss(params):
    return jnp.sum((params["w"].astype(jnp.float32).sum(0) + params["b"].astype(jnp.float32) - 1.0) ** 2)


@pytest.mark.parametrize("name", LEARNED)
def test_runs_in_a_donating_step_on_half_precision_parameters(name):
    """The usual memory-saving loop (no two state fields may share a buffer), on bfloat16 and
    float16 parameters: updates come in the gradients' dtypes, the state stays float32."""
    lopt = _build(name)
    tx = lopt.transform(lopt.init(jax.random.PRNGKey(0)))
    params = {"w": _params(jnp.bfloat16)["w"], "b": _params(jnp.float16)["b"]}
    dtypes = jax.tree.map(lambda x: x.dtype, params)
    opt_state = tx.init(params)
    structure = jax.tree.structure(opt_state)

    def train_step(params, opt_state):
        updates, opt_state = tx.update(jax.grad(_loss)(params), opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    step = jax.jit(train_step, donate_argnums=(0, 1))
    for _ in range(3):
        params, opt_state = step(params, opt_state)
    updates, _ = tx.update(jax.grad(_loss)(params), opt_state, params)
    assert jax.tree.map(lambda x: x.dtype, updates) == dtypes == jax.tree.map(lambda x: x.dtype, params)
    assert jax.tree.structure(opt_state) == structure
    floating = [leaf.dtype for leaf in jax.tree.leaves(opt_state) if jnp.issubdtype(leaf.dtype, jnp.floating)]
    assert set(floating) <= {jnp.dtype(jnp.float32)}, floating
    assert all(np.all(np.isfinite(np.asarray(leaf, np.float32))) for leaf in jax.tree.leaves(params))


@pytest.mark.parametrize("name", LEARNED)
def test_gradients_unlike_the_state_raise(name):
    lopt = _build(name)
    tx = lopt.transform(lopt.init(jax.random.PRNGKey(0)))
    state = tx.init(_params())
    other = {"v": jnp.ones(16)}  # as many coordinates, another structure
    with pytest.raises((ValueError, TypeError)):
        tx.update(other, state, other)


def _wrong_values(annotation):
    """Values of the wrong type for a field annotated ``annotation``."""
    origin = typing.get_origin(annotation) or annotation
    if annotation is bool:
        return ["False", 0]
    if annotation in (int, float):
        return ["abc", "1", float("nan")] if annotation is float else ["abc", "1", 2.5]
    if origin is tuple:
        return ["44", "40,40", 3]
    return []


def _field_cases():
    for name in LEARNED:
        types = typing.get_type_hints(LEARNED[name])
        for field in dataclasses.fields(LEARNED[name]):
            for value in _wrong_values(types[field.name]):
                yield pytest.param(name, field.name, value, id=f"{name}-{field.name}-{value!r}")


@pytest.mark.parametrize("name, field, value", list(_field_cases()))
def test_hyperparameters_of_the_wrong_type_are_refused(name, field, value):
    options = {**EXAMPLE_OPTIONS.get(name, {}), field: value}
    with pytest.raises(L2OError) as error:
        get_learned(name, **options)
    assert "\n" not in str(error.value) and field in str(error.value)


def test_every_architecture_has_typed_fields_to_check():
    """The check above only covers annotated fields: every field has a checkable type."""
    for name, architecture in LEARNED.items():
        types = typing.get_type_hints(architecture)
        unchecked = [f.name for f in dataclasses.fields(architecture)
                     if not _wrong_values(types[f.name]) and types[f.name] not in (str, tuple)]
        assert not unchecked, f"{name}: fields without a type the contract checks: {unchecked}"


def test_unknown_hyperparameters_are_refused():
    with pytest.raises(L2OError, match="unknown DM hyperparameter"):
        get_learned("DM", layer=[20])


def test_every_architecture_class_is_registered():
    """A learned architecture written in l2o.optimizers but missing from LEARNED is never
    reachable by name, from configurations or saved optimizers: every class with ``init``,
    ``transform`` and a ``name`` must be registered under that name."""
    import importlib
    import inspect
    import pkgutil

    import l2o.optimizers

    found = {}
    for module_info in pkgutil.iter_modules(l2o.optimizers.__path__):
        module = importlib.import_module(f"l2o.optimizers.{module_info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == module.__name__ and dataclasses.is_dataclass(cls) and all(
                    hasattr(cls, attribute) for attribute in ("init", "transform", "name")):
                found[cls.name] = cls
    assert found == dict(LEARNED)


@pytest.mark.parametrize("name", LEARNED)
def test_name_init_and_saving(name, tmp_path):
    lopt = _build(name)
    assert lopt.name == name
    shapes = [jax.eval_shape(lopt.init, jax.random.PRNGKey(seed)) for seed in (0, 1)]
    assert jax.tree.structure(shapes[0]) == jax.tree.structure(shapes[1])
    assert jax.tree.leaves(shapes[0]) == jax.tree.leaves(shapes[1])
    theta = lopt.init(jax.random.PRNGKey(0))
    save_optimizer(tmp_path / "saved", lopt, theta)
    loaded, loaded_theta = l2o.load(tmp_path / "saved")
    assert loaded == lopt
    jax.tree.map(np.testing.assert_array_equal, loaded_theta, theta)


@pytest.mark.parametrize("name", LEARNED)
def test_runs_in_an_optax_chain_and_a_multi_transform(name):
    lopt = _build(name)
    learned = lopt.transform(lopt.init(jax.random.PRNGKey(0)))
    chained = optax.chain(optax.clip_by_global_norm(1.0), learned)
    split = optax.multi_transform({"learned": learned, "sgd": optax.sgd(0.1)}, {"w": "learned", "b": "sgd"})
    for tx in (chained, split):
        params = _params()
        state = tx.init(params)

        @jax.jit
        def step(params, state, tx=tx):
            updates, state = tx.update(jax.grad(_loss)(params), state, params)
            return optax.apply_updates(params, updates), state

        for _ in range(2):
            params, state = step(params, state)
        assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(params))


@pytest.mark.parametrize("name", LEARNED)
def test_steps_a_convnet(name):
    task = conv_classifier(conv_channels=(2,), linear_layers=(3,), dataset="digits", batch_size=4)
    params = task.init(jax.random.PRNGKey(0), {})
    lopt = _build(name)
    tx = lopt.transform(lopt.init(jax.random.PRNGKey(1)))
    grads = jax.grad(task.loss)(params, {}, jax.random.PRNGKey(2))
    updates, _ = jax.jit(tx.update)(grads, tx.init(params), params)
    assert jax.tree.structure(updates) == jax.tree.structure(params)
    for update, param in zip(jax.tree.leaves(updates), jax.tree.leaves(params)):
        assert update.shape == param.shape and np.all(np.isfinite(update))


@pytest.mark.parametrize("name", LEARNED)
def test_untrained_does_not_diverge_on_the_quadratic(name):
    losses = untrained_losses(_build(name), get_task("quadratic"))
    bounded = np.all(np.isfinite(losses)) and np.all(losses.max(axis=1) <= 2.0 * losses[:, 0])
    if name in UNTRAINED_MAY_DIVERGE and not bounded:
        pytest.xfail(UNTRAINED_MAY_DIVERGE[name])
    assert bounded, losses.max(axis=1) / losses[:, 0]
