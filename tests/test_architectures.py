"""RNNProp, ScaleBasic, ScaleHierarchical and AdafacMLP: their features match independent
computations and untrained they do not diverge on MNIST. What every architecture must do
(optax loops, Multi, meta-gradients, save/load, convnets) is tests/test_architecture_contract.py."""

import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers.architectures import untrained_losses

from l2o.errors import L2OError
from l2o.optimizers import AdafacMLP, Multi, RNNProp, ScaleBasic, ScaleHierarchical, features, get_learned
from l2o.optimizers.adafac_mlp import orthogonalized
from l2o.tasks import get_task

NEW = ["RNNProp", "ScaleBasic", "ScaleHierarchical", "AdafacMLP"]
DATA = Path(os.environ.get("L2O_DATA_DIR", Path(__file__).parents[2] / "shared" / "data"))
HAS_MNIST = (DATA / "train-images-idx3-ubyte.gz").exists() or (DATA / "mnist" / "train-images-idx3-ubyte.gz").exists()


def tree_params():
    return {"w": jnp.linspace(-1.0, 1.0, 12).reshape(3, 4), "b": jnp.array([0.5, -0.2, 0.1, 0.0]), "s": jnp.array(0.3)}


def tree_grads(step):
    return jax.tree.map(lambda p: jnp.sin(3.0 * p + step) + 0.1 * step, tree_params())


def test_rnnprop_inputs_are_adams_normalized_moments():
    """Column 0 of RNNProp's input is Adam's update direction (optax, eps inside the root)."""
    lopt = RNNProp(beta_1=0.9, beta_2=0.9, epsilon=1e-8)
    adam = optax.scale_by_adam(b1=0.9, b2=0.9, eps=0.0, eps_root=1e-8)
    params = tree_params()
    adam_state = adam.init(params)
    m = v = jnp.zeros(17)
    for step in range(1, 4):
        grads = tree_grads(step)
        flat = jax.flatten_util.ravel_pytree(grads)[0]
        m, v = features.ema(m, flat, 0.9), features.ema(v, flat**2, 0.9)
        inputs = features.adam_normalized(features.debias(m, 0.9, step), features.debias(v, 0.9, step), flat, 1e-8)
        expected, adam_state = adam.update(grads, adam_state)
        np.testing.assert_allclose(inputs[:, 0], jax.flatten_util.ravel_pytree(expected)[0], rtol=1e-5)
        np.testing.assert_allclose(inputs[:, 1], flat / np.sqrt(features.debias(v, 0.9, step) + 1e-8), rtol=1e-5)
    theta = lopt.init(jax.random.PRNGKey(0))
    tx = lopt.transform(theta)
    state = tx.init(params)
    for step in range(1, 4):
        _, state = tx.update(tree_grads(step), state)
    np.testing.assert_allclose(state.momentum, m, rtol=1e-6)
    np.testing.assert_allclose(state.second_moment, v, rtol=1e-6)


def test_adafactor_statistics_match_numpy_and_are_exact_for_vectors():
    rng = np.random.default_rng(0)
    g = rng.normal(size=(5, 3)).astype(np.float32)
    decays = jnp.array([0.5, 0.9])
    rows, cols = features.adafactor_accumulate(jnp.zeros((2, 5)), jnp.zeros((2, 3)), g, decays)
    np.testing.assert_allclose(rows, np.outer(1 - np.array([0.5, 0.9]), (g**2).mean(1)), rtol=1e-6)
    np.testing.assert_allclose(cols, np.outer(1 - np.array([0.5, 0.9]), (g**2).mean(0)), rtol=1e-6)
    # A rank-one second moment is recovered exactly; so is a vector seen as an (n, 1) matrix.
    u, w = rng.uniform(0.5, 2, 5), rng.uniform(0.5, 2, 3)
    square = np.outer(u, w)
    estimate = features.adafactor_estimate(jnp.asarray(square.mean(1))[None], jnp.asarray(square.mean(0))[None], 0.0)
    np.testing.assert_allclose(estimate[0], square, rtol=1e-5)
    vector = rng.uniform(0.1, 1, (6, 1))
    estimate = features.adafactor_estimate(jnp.asarray(vector.mean(1))[None], jnp.asarray(vector.mean(0))[None], 0.0)
    np.testing.assert_allclose(estimate[0], vector, rtol=1e-5)


def test_timescales_and_relative_log_magnitudes():
    decays = features.timescale_decays(jnp.array([0.9, 0.5]), 3)
    np.testing.assert_allclose(decays, [[0.9, 0.9**0.5, 0.9**0.25], [0.5, 0.5**0.5, 0.5**0.25]], rtol=1e-6)
    v = jnp.array([[1.0, 10.0, 100.0]])
    np.testing.assert_allclose(features.relative_log_magnitude(v, 0.0), [[-np.log(10), 0.0, np.log(10)]], rtol=1e-5)


def test_scale_basic_learning_rates_start_log_uniform_and_untrained_heads_keep_them():
    lopt = ScaleBasic(init_lr=(1e-3, 1e-1))
    tx = lopt.transform(lopt.init(jax.random.PRNGKey(0)))
    params = {"w": jnp.zeros(2000)}
    state = tx.init(params)
    logs = np.log10(np.asarray(state.learning_rate))
    assert logs.min() >= -3 - 1e-5 and logs.max() <= -1 + 1e-5 and abs(logs.mean() + 2) < 0.05
    updates, new_state = tx.update({"w": jnp.ones(2000)}, state)
    np.testing.assert_allclose(new_state.learning_rate, state.learning_rate, rtol=1e-6)
    np.testing.assert_allclose(new_state.decay, 0.9, rtol=1e-6)
    np.testing.assert_allclose(new_state.mean_square, 1.0)  # decay 0 on the first step


def test_hierarchical_shares_weights_within_tensors_and_centres_learning_rates():
    lopt = ScaleHierarchical(direction_init_scale=1.0)
    theta = jax.tree.map(lambda t: t + 0.05, lopt.init(jax.random.PRNGKey(0)))  # move the zero heads
    tx = lopt.transform(theta)
    params = tree_params()
    grads = tree_grads(1)
    permutation = np.array([3, 1, 0, 2])
    permuted = {**grads, "b": grads["b"][permutation]}
    state = tx.init(params)
    # Same learning-rate draw for the permuted coordinates, so only the gradient order differs.
    log_lr = state.network.log_lr
    state_permuted = state._replace(network=state.network._replace(log_lr=log_lr.at[:4].set(log_lr[:4][permutation])))
    updates, new_state = tx.update(grads, state)
    updates_permuted, _ = tx.update(permuted, state_permuted)
    np.testing.assert_allclose(updates_permuted["b"], updates["b"][permutation], rtol=1e-5)
    np.testing.assert_allclose(updates_permuted["w"], updates["w"], rtol=1e-5)
    # Relative log learning rates have mean zero within each tensor (b: 4, s: 1, w: 12 coordinates).
    relative = np.asarray(new_state.network.relative_log_lr)
    for segment in (slice(0, 4), slice(4, 5), slice(5, 17)):
        assert abs(relative[segment].mean()) < 1e-5
    assert new_state.network.tensor_hidden.shape == (3, lopt.tensor_units)


def test_adafac_mlp_needs_params_and_has_small_untrained_steps():
    lopt = AdafacMLP()
    tx = lopt.transform(lopt.init(jax.random.PRNGKey(0)))
    params = tree_params()
    state = tx.init(params)
    with pytest.raises(ValueError, match="needs params"):
        tx.update(tree_grads(1), state)
    updates, state = tx.update(tree_grads(1), state, params)
    assert int(state.count) == 1 and state.momentum["w"].shape == (5, 3, 4) and state.rows["w"].shape == (3, 3)
    magnitudes = np.abs(jax.flatten_util.ravel_pytree(updates)[0])
    assert magnitudes.max() < 0.01 and magnitudes.max() > 0


def test_adafac_mlp_fused_network_equals_the_plain_mlp_on_normalized_features():
    lopt = AdafacMLP(hidden_size=6, hidden_layers=2)
    theta = lopt.init(jax.random.PRNGKey(1))
    rng = np.random.default_rng(0)
    inputs = [jnp.asarray(rng.normal(size=50) * scale, jnp.float32) for scale in np.logspace(-4, 2, 19)]
    steps = features.step_features(jnp.float32(7.0), lopt.step_timescales)
    matrix = features.second_moment_normalize(jnp.stack(inputs, axis=-1), lopt.epsilon)
    expected = lopt._network.apply(theta, jnp.concatenate([matrix, jnp.broadcast_to(steps, (50, 11))], axis=-1))
    np.testing.assert_allclose(lopt._apply(theta, inputs, steps), expected.T, rtol=2e-4, atol=1e-6)


NORMALIZED = {"adam_prior": True, "normalize_output": True, "relative_step_mult": 0.01, "exp_mult": 1.0}


def test_untrained_adam_prior_is_normalized_adam_computed_independently():
    """Zero output layer: each tensor steps along ``-m / sqrt(v)`` at unit root mean square times
    ``step_mult`` (vectors, scalars) or ``0.01 * rms(p) + step_mult / 100`` (the matrix)."""
    lopt = AdafacMLP(**NORMALIZED)
    tx = lopt.transform(lopt.init(jax.random.PRNGKey(0)))
    update = jax.jit(tx.update)
    params = tree_params()
    state = tx.init(params)
    m = {k: np.zeros(np.shape(v)) for k, v in params.items()}
    v = {k: np.zeros(np.shape(p)) for k, p in params.items()}
    for step in range(1, 4):
        params_np = {k: np.asarray(p, np.float64) for k, p in params.items()}
        grads = tree_grads(step)
        updates, state = update(grads, state, params)
        for k in params:
            g = np.asarray(grads[k], np.float64)
            m[k] = 0.9 * m[k] + 0.1 * g
            v[k] = 0.999 * v[k] + 0.001 * g**2
            direction = -m[k] / np.sqrt(v[k] + 1e-8)
            direction = direction / np.sqrt(np.mean(direction**2))
            size = 0.01 * np.sqrt(np.mean(params_np[k] ** 2)) + 1e-5 if params_np[k].ndim >= 2 else 1e-3
            np.testing.assert_allclose(updates[k], size * direction, rtol=1e-4, err_msg=f"{k}, step {step}")
        params = optax.apply_updates(params, updates)


def test_relative_steps_follow_a_rescaled_weight_tensor():
    """Reparameterization (augmentation's tensor level): parameters ``c * w`` with gradients ``g / c``
    give updates ``c`` times as large, for any meta-parameters (here random, so the network counts).
    Exactly so but for the numerical floors, which the test makes negligible (at the default
    ``epsilon`` the updates differ by up to 0.5% where a gradient is near zero)."""
    lopt = AdafacMLP(**{**NORMALIZED, "adam_prior": False, "step_mult": 1e-9, "epsilon": 1e-20})
    tx = lopt.transform(lopt.init(jax.random.PRNGKey(3)))
    for scale in (1e-2, 1e2):
        params, scaled = {"w": tree_params()["w"]}, {"w": scale * tree_params()["w"]}
        state, scaled_state = tx.init(params), tx.init(scaled)
        for step in range(1, 4):
            grads = {"w": tree_grads(step)["w"]}
            updates, state = tx.update(grads, state, params)
            scaled_updates, scaled_state = tx.update({"w": grads["w"] / scale}, scaled_state, scaled)
            np.testing.assert_allclose(scaled_updates["w"], scale * updates["w"], rtol=1e-4)
            assert np.abs(updates["w"]).max() > 1e-4
            params = optax.apply_updates(params, updates)
            scaled = optax.apply_updates(scaled, scaled_updates)


MUON = {"momentum_decays": (0.1, 0.5, 0.9, 0.95, 0.99, 0.999), "muon_prior": True, "step_mult": 0.02}


def test_untrained_muon_prior_is_optax_muon():
    """Zero output layer: every update is optax's ``contrib.muon(0.02)``'s (Nesterov Muon with width
    scaling for the matrices, Nesterov Adam for the vector and the scalar), over steps whose
    gradients grow by two decades, for a tall and a wide matrix."""
    lopt = AdafacMLP(**MUON)
    ours, reference = lopt.transform(lopt.init(jax.random.PRNGKey(0))), optax.contrib.muon(0.02)
    params = {**tree_params(), "tall": jnp.linspace(-1.0, 1.0, 21).reshape(7, 3)}
    state, reference_state = ours.init(params), reference.init(params)
    for step in range(1, 11):
        grads = jax.tree.map(lambda p, step=step: (1.0 + step**2) * jnp.sin(3.0 * p + step), params)
        updates, state = ours.update(grads, state, params)
        expected, reference_state = reference.update(grads, reference_state, params)
        for k in params:
            np.testing.assert_allclose(updates[k], expected[k], rtol=1e-4, atol=1e-7, err_msg=f"{k}, step {step}")
        params = optax.apply_updates(params, updates)


def test_muon_anneal_scales_muons_matrix_steps_by_the_gradients_signal_share():
    """``muon_anneal=a``: a matrix's step is optax Muon's times ``min(1, rho / a)``, with ``rho``
    computed here in float64 from the gradient history (debiased averages of the gradient at decay
    0.95 and of its square at 0.9, ``sqrt(mean(m^2) / mean(g^2))``); vectors keep Muon's (Nesterov
    Adam) step. Gradients that flip sign every step are noise (rho falls towards 0.16, the steps
    shrink); gradients that keep their sign are signal, even while they shrink tenfold (rho near 1,
    Muon's steps)."""
    anneal = 0.25
    lopt = AdafacMLP(**MUON, muon_anneal=anneal)
    params = tree_params()
    for flips in (True, False):
        ours, reference = lopt.transform(lopt.init(jax.random.PRNGKey(0))), optax.contrib.muon(0.02)
        state, reference_state = ours.init(params), reference.init(params)
        history = []
        for step in range(1, 31):
            sign = (-1.0) ** step if flips else 0.9**step
            grads = jax.tree.map(lambda p, sign=sign: sign * (0.5 + jnp.cos(2.0 * p)), params)
            history.append(np.asarray(grads["w"], np.float64))
            updates, state = ours.update(grads, state, params)
            expected, reference_state = reference.update(grads, reference_state, params)
            m = sum(0.05 * 0.95 ** (step - 1 - i) * g for i, g in enumerate(history)) / (1 - 0.95**step)
            v = sum(0.1 * 0.9 ** (step - 1 - i) * g**2 for i, g in enumerate(history)) / (1 - 0.9**step)
            rho = np.sqrt(np.mean(m**2) / np.mean(v))
            share = min(1.0, rho / anneal)
            np.testing.assert_allclose(updates["w"], share * np.asarray(expected["w"]), rtol=1e-4, atol=1e-7)
            np.testing.assert_allclose(updates["b"], expected["b"], rtol=1e-4, atol=1e-7)
        assert (share < 0.8) == flips  # noise ends with shrunken steps, signal with Muon's


def _in_singular_basis(result, matrix):
    """``U^T result V`` for the singular vectors of ``matrix`` (float64): diagonal when ``result``
    shares them."""
    u, _, vt = np.linalg.svd(np.asarray(matrix, np.float64), full_matrices=False)
    return u.T @ np.asarray(result, np.float64) @ vt.T


@pytest.mark.parametrize("shape", [(30, 7), (7, 30)])
def test_orthogonalization_keeps_singular_vectors_and_brings_singular_values_near_one(shape):
    """Singular values spread over two decades come out within [0.6, 1.25], in the same basis
    (numpy's SVD as the reference)."""
    rng = np.random.default_rng(0)
    u, _ = np.linalg.qr(rng.normal(size=(shape[0], min(shape))))
    v, _ = np.linalg.qr(rng.normal(size=(shape[1], min(shape))))
    matrix = (u * np.logspace(-2, 0, min(shape))) @ v.T
    basis = _in_singular_basis(orthogonalized(jnp.asarray(matrix, jnp.float32)), matrix)
    singular = np.diag(basis)
    assert np.all((singular > 0.6) & (singular < 1.25)), singular
    np.testing.assert_allclose(basis - np.diag(singular), 0.0, atol=1e-4)


def test_orthogonal_updates_change_matrices_only_and_keep_the_step_size():
    """Untrained normalized Adam with ``orthogonalize``: the matrix's update is the plain option's,
    orthogonalized and rescaled to the same root mean square (the step size); vectors and scalars
    step as without the option."""
    plain, orthogonal = AdafacMLP(**NORMALIZED), AdafacMLP(**NORMALIZED, orthogonalize=True)
    rng = np.random.default_rng(1)
    params = {**tree_params(), "w": jnp.asarray(rng.normal(size=(6, 5)), jnp.float32)}
    grads = jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), jnp.float32), params)
    results = []
    for lopt in (plain, orthogonal):
        tx = lopt.transform(lopt.init(jax.random.PRNGKey(0)))
        results.append(tx.update(grads, tx.init(params), params)[0])
    before, after = results
    for key in ("b", "s"):
        np.testing.assert_array_equal(after[key], before[key])
    rms = lambda x: np.sqrt(np.mean(np.square(np.asarray(x, np.float64))))
    expected = np.asarray(orthogonalized(before["w"]), np.float64)
    np.testing.assert_allclose(after["w"], expected * rms(before["w"]) / rms(expected), rtol=1e-4)
    assert not np.allclose(after["w"], before["w"], rtol=1e-2)


@pytest.mark.skipif(not HAS_MNIST, reason=f"MNIST files not found in {DATA}")
@pytest.mark.parametrize("name", NEW)
def test_untrained_optimizers_do_not_diverge_on_mnist(name):
    losses = untrained_losses(get_learned(name), get_task("mnist", data_dir=str(DATA)), runs=3)
    assert np.all(np.isfinite(losses))
    assert np.all(losses.max(axis=1) <= 2.0 * losses[:, 0]), losses.max(axis=1) / losses[:, 0]


def test_multi_mixes_new_architectures_with_a_baseline():
    multi = Multi(groups=[
        {"name": "matrices", "pattern": "w", "optimizer": "AdafacMLP"},
        {"name": "bias", "pattern": "b", "optimizer": "RNNProp"},
        {"name": "rest", "pattern": ".*", "optimizer": "Adam", "options": {"learning_rate": 0.1}},
    ])
    theta = multi.init(jax.random.PRNGKey(0))
    tx = multi.transform(theta)
    params = tree_params()
    state = tx.init(params)
    updates, _ = tx.update(tree_grads(1), state, params)
    adafac = AdafacMLP().transform(theta["matrices"])
    expected, _ = adafac.update({"w": tree_grads(1)["w"]}, adafac.init({"w": params["w"]}), {"w": params["w"]})
    np.testing.assert_allclose(updates["w"], expected["w"], rtol=1e-5)
    np.testing.assert_allclose(updates["s"], -0.1 * np.sign(tree_grads(1)["s"]), rtol=1e-4)


@pytest.mark.parametrize("kwargs, message", [
    ({"layers": []}, "layers"),
    ({"beta_1": 1.0}, "beta_1"),
])
def test_bad_rnnprop_hyperparameters_are_user_errors(kwargs, message):
    with pytest.raises(L2OError, match=message):
        RNNProp(**kwargs)


def test_bad_scale_and_adafac_hyperparameters_are_user_errors():
    with pytest.raises(L2OError, match="init_lr"):
        ScaleBasic(init_lr=(1.0, 0.1))
    with pytest.raises(L2OError, match="timescales"):
        ScaleHierarchical(timescales=0)
    with pytest.raises(L2OError, match="decays"):
        AdafacMLP(momentum_decays=(1.5,))
    with pytest.raises(L2OError, match="relative_step_mult must be >= 0"):
        AdafacMLP(relative_step_mult=-0.1)
    with pytest.raises(L2OError, match="adam_prior needs 0.9"):
        AdafacMLP(adam_prior=True, momentum_decays=(0.5, 0.99))
    with pytest.raises(L2OError, match="muon_prior needs 0.9 and 0.95"):
        AdafacMLP(muon_prior=True)
    with pytest.raises(L2OError, match="turn off normalize_output, orthogonalize"):
        AdafacMLP(**MUON, normalize_output=True, orthogonalize=True)
    with pytest.raises(L2OError, match="unknown learned optimizer"):
        get_learned("Scale")
