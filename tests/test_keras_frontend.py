"""l2o.keras trains Keras 3 models with the numbers l2o.load_optax gives (runs when keras is
installed: `pip install -e '.[test,keras]'`; Keras's JAX backend here, the torch backend in a
subprocess)."""

import dataclasses
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

os.environ.setdefault("KERAS_BACKEND", "jax")
keras = pytest.importorskip("keras")
if keras.backend.backend() not in ("jax", "torch"):
    pytest.skip("l2o.keras runs on Keras's JAX and torch backends", allow_module_level=True)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import l2o  # noqa: E402
import l2o.keras  # noqa: E402
from l2o.optimizers import LEARNED  # noqa: E402
from l2o.saved_optimizer import save_optimizer  # noqa: E402

DATA = Path(__file__).parent / "data"
TRAINED = {"AdafacMLP": DATA / "trained" / "AdafacMLP", "RNNProp": DATA / "trained" / "RNNProp",
           "DM": DATA / "run-format-1"}
# Every architecture but Multi (its groups select parameters by name).
ARCHITECTURES = sorted(set(LEARNED) - {"Multi"})
RTOL, ATOL = 1e-5, 1e-6  # as tests/test_torch_frontend.py: float32 in another order, over 100 steps
STEPS = 100


def _model(kind: str, dtype="float32") -> keras.Model:
    keras.utils.set_random_seed(0)
    if kind == "mlp":
        layers = [keras.Input((10,)), keras.layers.Dense(12, activation="tanh", dtype=dtype),
                  keras.layers.Dense(3, dtype=dtype)]
    else:  # tanh, not ReLU: see tests/test_torch_frontend.py
        layers = [keras.Input((6, 6, 2)), keras.layers.Conv2D(4, 3, padding="same", activation="tanh"),
                  keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3)]
    return keras.Sequential(layers)


def _batches(kind: str):
    rng = np.random.default_rng(0)
    shape = (16, 10) if kind == "mlp" else (16, 6, 6, 2)
    return rng.normal(size=(STEPS, *shape)).astype(np.float32), rng.integers(0, 3, size=(STEPS, 16))


def _jax_loss(kind, params, x, y):
    if kind == "mlp":
        logits = jnp.tanh(x @ params[0] + params[1]) @ params[2] + params[3]
    else:
        h = jax.lax.conv_general_dilated(x, params[0], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
        logits = jnp.tanh(h + params[1]).mean(axis=(1, 2)) @ params[2] + params[3]
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def _optax_run(path, kind, init, xs, ys, learning_rate=1.0):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tx = l2o.load_optax(path, learning_rate=learning_rate)

    @jax.jit
    def step(params, state, x, y):
        grads = jax.grad(lambda p: _jax_loss(kind, p, x, y))(params)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    params = [jnp.asarray(w) for w in init]
    state = tx.init(params)
    for x, y in zip(xs, ys):
        params, state = step(params, state, x, y)
    return [np.asarray(w) for w in params]


def _compiled(model, path, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        optimizer = l2o.keras.LearnedOptimizer(path, **kwargs)
    model.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def _fit(model, xs, ys):
    for x, y in zip(xs, ys):
        model.train_on_batch(x, y)
    return [np.asarray(w, np.float32) for w in model.get_weights()]


@pytest.fixture(scope="module")
def untrained(tmp_path_factory):
    """A saved optimizer per architecture, at its initial meta-parameters (seed 0)."""
    paths = {}
    for name in ARCHITECTURES:
        lopt = l2o.get_learned(name)
        paths[name] = tmp_path_factory.mktemp(name)
        save_optimizer(paths[name], lopt, lopt.init(jax.random.PRNGKey(0)))
    return paths


# The glue is the same for every architecture (on the JAX backend the step is load_optax's own, which
# the architecture tests cover): the trained rules on the MLP, one on the convnet, and the untrained
# architectures whose state does not start at zero or depends on the order of the variables.
CASES = ([(name, "trained", "mlp") for name in TRAINED] + [("AdafacMLP", "trained", "convnet")]
         + [(name, "untrained", "mlp") for name in ("ScaleBasic", "ScaleHierarchical")])


@pytest.mark.parametrize("name, which, kind", CASES, ids=["-".join(case) for case in CASES])
def test_100_fit_steps_give_the_parameters_optax_gives(untrained, name, which, kind):
    path = TRAINED[name] if which == "trained" else untrained[name]
    model = _model(kind)
    init = [np.asarray(w) for w in model.get_weights()]
    xs, ys = _batches(kind)
    got = _fit(_compiled(model, path), xs, ys)
    expected = _optax_run(path, kind, init, xs, ys)
    assert max(np.abs(e - i).max() for e, i in zip(expected, init)) > 1e-3  # it moved
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("name", l2o.pretrained.names())
def test_a_shipped_name_loads_its_weights(name):
    """One step with the name is the step with its weights folder (the glue's numbers are tested
    above), and not the step of another optimizer."""
    def step(optimizer):
        variable = keras.Variable(np.linspace(-1.0, 1.0, 6, dtype="float32"))
        optimizer.apply([keras.ops.convert_to_tensor(np.arange(6.0, dtype="float32") - 2.5)], [variable])
        return np.asarray(variable.value)

    by_name = step(l2o.keras.LearnedOptimizer(name))
    np.testing.assert_array_equal(by_name, step(l2o.keras.LearnedOptimizer(l2o.pretrained.weights_dir(name))))
    assert not np.array_equal(by_name, step(l2o.keras.LearnedOptimizer(TRAINED["AdafacMLP"])))


def test_saving_and_loading_the_model_resumes_exactly(tmp_path):
    """50 steps, model.save, keras.models.load_model (optimizer state included), 50 more: the
    same bytes as 100 uninterrupted steps."""
    xs, ys = _batches("mlp")
    uninterrupted = _fit(_compiled(_model("mlp"), TRAINED["RNNProp"]), xs, ys)
    model = _compiled(_model("mlp"), TRAINED["RNNProp"])
    _fit(model, xs[:50], ys[:50])
    model.save(tmp_path / "model.keras")
    restored = keras.models.load_model(tmp_path / "model.keras")
    assert isinstance(restored.optimizer, l2o.keras.LearnedOptimizer)
    resumed = _fit(restored, xs[50:], ys[50:])
    for r, u in zip(resumed, uninterrupted):
        np.testing.assert_array_equal(r, u)


def test_learning_rate_multiplies_the_update():
    xs, ys = _batches("mlp")
    moves = {}
    for rate in (1.0, 0.25):
        model = _model("mlp")
        init = [np.asarray(w) for w in model.get_weights()]
        after = _fit(_compiled(model, TRAINED["AdafacMLP"], learning_rate=rate), xs[:1], ys[:1])
        moves[rate] = after[0] - init[0]
    np.testing.assert_allclose(moves[0.25], 0.25 * moves[1.0], rtol=1e-5, atol=6e-8)


@pytest.mark.parametrize("kind", ["mlp", "convnet"])
def test_told_the_runs_length_keras_and_optax_agree(kind):
    """The README's recommended mode: the shipped optimizer with a Keras schedule falling linearly
    from 1 to 0 over the run gives the parameters ``l2o.load_optax`` gives with
    ``optax.linear_schedule(1.0, 0.0, num_steps)``, and not those of the constant optimizer."""
    xs, ys = _batches(kind)
    model = _model(kind)
    init = [np.asarray(w) for w in model.get_weights()]
    linear = keras.optimizers.schedules.PolynomialDecay(1.0, STEPS, end_learning_rate=0.0, power=1.0)
    got = _fit(_compiled(model, "muon-fastvelo", learning_rate=linear), xs, ys)
    expected = _optax_run("muon-fastvelo", kind, init, xs, ys, learning_rate=optax.linear_schedule(1.0, 0.0, STEPS))
    constant = _optax_run("muon-fastvelo", kind, init, xs, ys)
    assert max(np.abs(e - c).max() for e, c in zip(expected, constant)) > 1e-3
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=RTOL, atol=ATOL)


def test_bfloat16_variables_keep_a_float32_state():
    xs, ys = _batches("mlp")
    model = _compiled(_model("mlp", dtype="bfloat16"), TRAINED["AdafacMLP"])
    after = _fit(model, xs[:3], ys[:3])
    assert all(np.isfinite(w).all() for w in after)
    states = [v for v in model.optimizer.variables if "l2o_state" in v.path]
    assert states and {v.dtype for v in states} <= {"float32", "int32"}
    assert {w.dtype for w in model.trainable_variables} == {"bfloat16"}


def test_a_non_finite_gradient_changes_nothing():
    model = _model("mlp")
    optimizer = _compiled(model, TRAINED["AdafacMLP"]).optimizer
    variables = model.trainable_variables
    grads = [keras.ops.ones(v.shape) for v in variables]
    optimizer.apply(grads, variables)
    before = [np.asarray(v.value) for v in [*variables, *optimizer.variables]]
    optimizer.apply([g * np.nan if i == 1 else g for i, g in enumerate(grads)], variables)
    after = [np.asarray(v.value) for v in [*variables, *optimizer.variables]]
    assert optimizer.skipped_steps == 1
    changed = [i for i, (b, a) in enumerate(zip(before, after)) if not np.array_equal(b, a)]
    # nothing moves but Keras's own iteration counter and the skip count (one entry of the state)
    assert len(changed) == 2 and optimizer.variables[changed[0] - len(variables)].path.endswith("iteration")


def test_multi_is_a_one_line_error(tmp_path):
    lopt = l2o.get_learned("Multi", groups=[{"name": "all", "pattern": ".*", "optimizer": "AdafacMLP"}])
    save_optimizer(tmp_path, lopt, lopt.init(jax.random.PRNGKey(0)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(l2o.L2OError, match="does not run Multi optimizers"):
            l2o.keras.LearnedOptimizer(tmp_path)


def test_the_torch_backend_gives_the_same_numbers(tmp_path):
    """The convnet (a kernel and a dense layer) run through Keras's torch backend (l2o.torch's
    rules, which read torch's layouts: Keras's kernels are transposed for them), in a subprocess
    since a process has one Keras backend, against optax: a trained AdafacMLP, and Muon's update
    (whose width scale reads which axis is the output) under a network that is not zero."""
    pytest.importorskip("torch")
    muon = l2o.get_learned("AdafacMLP", momentum_decays=(0.1, 0.5, 0.9, 0.95, 0.99, 0.999), muon_prior=True,
                           step_mult=0.02)
    save_optimizer(tmp_path, muon, dataclasses.replace(muon, muon_prior=False).init(jax.random.PRNGKey(1)))
    cases = [(str(TRAINED["AdafacMLP"]), "convnet"), (str(tmp_path), "convnet")]
    script = f"""
import sys, warnings
sys.path.insert(0, {str(Path(__file__).parent)!r})
warnings.simplefilter("ignore")
import numpy as np
import test_keras_frontend as t
for path, kind in {cases!r}:
    model = t._model(kind)
    init = [np.asarray(w) for w in model.get_weights()]
    xs, ys = t._batches(kind)
    got = t._fit(t._compiled(model, path), xs, ys)
    for g, e in zip(got, t._optax_run(path, kind, init, xs, ys)):
        np.testing.assert_allclose(g, e, rtol=t.RTOL, atol=t.ATOL, err_msg=f"{{path}} on the {{kind}}")
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", script], env={**os.environ, "KERAS_BACKEND": "torch"},
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-3000:]
