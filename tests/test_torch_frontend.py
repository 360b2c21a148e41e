"""l2o.torch runs trained l2o optimizers in PyTorch with the numbers l2o.load_optax gives in JAX
(runs when torch is installed: `pip install -e '.[test,torch]'`)."""

import dataclasses
import io
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

torch = pytest.importorskip("torch")
# One thread per test worker: these tensors are tiny, and torch's thread pool spinning beside the
# other worker (and JAX) on two cores made each step ten times slower.
torch.set_num_threads(1)

import l2o  # noqa: E402
import l2o.torch  # noqa: E402
from l2o.optimizers import LEARNED, get_learned  # noqa: E402
from l2o.saved_optimizer import save_optimizer  # noqa: E402

DATA = Path(__file__).parent / "data"
TRAINED = {  # saved optimizers meta-trained by l2o: on fast_velo (issue 16's sweep), and the legacy DM run
    "AdafacMLP": DATA / "trained" / "AdafacMLP",
    "RNNProp": DATA / "trained" / "RNNProp",
    "DM": DATA / "run-format-1",
}
# Every architecture l2o.torch runs, at its initial meta-parameters: a new rule is covered on day one.
UNTRAINED = {**{name: {} for name in l2o.torch.RULES}, "DM-symmetric": {"symmetric": True}}
NORMALIZED = {"adam_prior": True, "normalize_output": True, "relative_step_mult": 0.01, "exp_mult": 1.0}
MUON = {"momentum_decays": (0.1, 0.5, 0.9, 0.95, 0.99, 0.999), "muon_prior": True, "step_mult": 0.02}
# Parameters after 100 steps agree elementwise to ATOL + RTOL * |parameter|: float32 arithmetic in
# another order (XLA's fusions, torch's kernels; convolution gradients computed differently),
# amplified along the trajectory.
RTOL, ATOL = 1e-5, 1e-6
STEPS = 100


def test_every_torch_rule_is_a_registered_architecture():
    assert set(l2o.torch.RULES) <= set(LEARNED)


@pytest.mark.parametrize("name", l2o.pretrained.names())
def test_zero_size_parameters_are_stepped_without_error(name):
    """Zero-size weights, vectors and kernels beside a real matrix: they stay empty, the matrix
    takes the step it takes alone."""
    empty = [torch.zeros(0, 5), torch.zeros(5, 0), torch.zeros(2, 0, 3, 3), torch.zeros(0)]
    alone, mixed = torch.ones(3, 4, requires_grad=True), torch.ones(3, 4, requires_grad=True)
    for params in ([alone], [*(p.requires_grad_() for p in empty), mixed]):
        optimizer = l2o.torch.LearnedOptimizer(params, name)
        sum(p.sum() for p in params).backward()
        optimizer.step()
        assert optimizer.skipped_steps == 0
    assert [tuple(p.shape) for p in empty] == [(0, 5), (5, 0), (2, 0, 3, 3), (0,)]
    assert torch.equal(mixed, alone) and not torch.equal(alone, torch.ones(3, 4))


@pytest.mark.parametrize("name", l2o.pretrained.names())
def test_a_shipped_name_loads_its_weights(name):
    """The name gives the optimizer its weights folder gives (the rules' numbers are tested above)."""
    param = torch.zeros(3, requires_grad=True)
    by_name = l2o.torch.LearnedOptimizer([param], name)
    by_path = l2o.torch.LearnedOptimizer([param], l2o.pretrained.weights_dir(name))
    other = l2o.torch.LearnedOptimizer([param], TRAINED["AdafacMLP"])
    assert by_name.state_dict()["l2o"] == by_path.state_dict()["l2o"] != other.state_dict()["l2o"]


@pytest.fixture(scope="module")
def optimizers(tmp_path_factory):
    """Saved-optimizer directories: every untrained case (initial meta-parameters, seed 0) and
    every trained fixture, keyed ``(case, "untrained" | "trained")``."""
    paths = {(name, "trained"): path for name, path in TRAINED.items()}
    lopt, theta = l2o.load(TRAINED["AdafacMLP"])  # its trained network under the normalized-update options
    paths[("AdafacMLP-normalized", "trained")] = path = tmp_path_factory.mktemp("AdafacMLP-normalized")
    save_optimizer(path, dataclasses.replace(lopt, **NORMALIZED), theta)
    paths[("AdafacMLP-orthogonal", "trained")] = path = tmp_path_factory.mktemp("AdafacMLP-orthogonal")
    save_optimizer(path, dataclasses.replace(lopt, **NORMALIZED, orthogonalize=True), theta)
    muon = get_learned("AdafacMLP", **MUON)  # Muon's update plus a network that is not zero
    paths[("AdafacMLP-muon", "trained")] = path = tmp_path_factory.mktemp("AdafacMLP-muon")
    save_optimizer(path, muon, dataclasses.replace(muon, muon_prior=False).init(jax.random.PRNGKey(1)))
    paths[("AdafacMLP-muon-anneal", "trained")] = path = tmp_path_factory.mktemp("AdafacMLP-muon-anneal")
    save_optimizer(path, dataclasses.replace(muon, muon_anneal=0.25),
                   dataclasses.replace(muon, muon_prior=False).init(jax.random.PRNGKey(1)))
    for case, options in UNTRAINED.items():
        lopt = get_learned(case.split("-")[0], **options)
        path = tmp_path_factory.mktemp(case)
        save_optimizer(path, lopt, lopt.init(jax.random.PRNGKey(0)))
        paths[(case, "untrained")] = path
    return paths


# Two models written twice, once per framework, each in its own layouts (torch's below: linear
# weights (out, in), convolution kernels (out, in, h, w); JAX's their transposes, see _jax_layout).
# Smooth activations: with ReLU, a pre-activation within rounding of 0 flips its derivative in one
# framework only, and the trajectories part for a reason that has nothing to do with the optimizer.
SHAPES = {
    "mlp": {"w1": (12, 10), "b1": (12,), "w2": (3, 12), "b2": (3,)},
    "convnet": {"kernel": (4, 2, 3, 3), "bias": (4,), "w": (3, 4), "b": (3,)},
}
INPUTS = {"mlp": (16, 10), "convnet": (16, 2, 6, 6)}


def _jax_loss(model, params, x, y):
    """The models in JAX's layouts (:func:`_jax_layout`): linear weights (in, out), kernels HWIO."""
    if model == "mlp":
        logits = jnp.tanh(x @ params["w1"] + params["b1"]) @ params["w2"] + params["b2"]
    else:
        layout = ("NCHW", "HWIO", "NCHW")
        h = jax.lax.conv_general_dilated(x, params["kernel"], (1, 1), "SAME", dimension_numbers=layout)
        h = jnp.tanh(h + params["bias"][:, None, None]).mean(axis=(2, 3))
        logits = h @ params["w"] + params["b"]
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def _jax_layout(params: dict, inverse: bool = False) -> dict:
    """Torch's layouts to JAX's, as a user's model has them in each (``inverse``: back): matrices
    transposed, kernels OIHW <-> HWIO. Rules that read a tensor's layout (Muon's width scale) are
    compared on what each framework's users give them."""
    kernel = (3, 2, 0, 1) if inverse else (2, 3, 1, 0)
    return {name: value.T if value.ndim == 2 else value.transpose(kernel) if value.ndim == 4 else value
            for name, value in params.items()}


def _torch_loss(model, params, x, y):
    if model == "mlp":
        logits = torch.tanh(x @ params["w1"].T + params["b1"]) @ params["w2"].T + params["b2"]
    else:
        h = torch.nn.functional.conv2d(x, params["kernel"], params["bias"], padding="same")
        logits = torch.tanh(h).mean(dim=(2, 3)) @ params["w"].T + params["b"]
    return torch.nn.functional.cross_entropy(logits, y)


def _problem(model, seed=0):
    """Initial parameters and ``STEPS`` batches, as numpy arrays."""
    rng = np.random.default_rng(seed)
    init = {name: (rng.normal(size=shape) / np.sqrt(shape[-1] if len(shape) > 1 else 4)).astype(np.float32)
            for name, shape in SHAPES[model].items()}
    xs = rng.normal(size=(STEPS, *INPUTS[model])).astype(np.float32)
    ys = rng.integers(0, 3, size=(STEPS, INPUTS[model][0]))
    return init, xs, ys


def _run_optax(path, model, init, xs, ys, dtype=jnp.float32, learning_rate=1.0):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # untrained optimizers warn
        tx = l2o.load_optax(path, learning_rate=learning_rate)

    @jax.jit
    def step(params, state, x, y):
        grads = jax.grad(lambda p: _jax_loss(model, p, x.astype(dtype), y))(params)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    params = {name: jnp.asarray(value, dtype) for name, value in _jax_layout(init).items()}
    state = tx.init(params)
    for x, y in zip(xs, ys):
        params, state = step(params, state, x, y)
    return _jax_layout({name: np.asarray(value, np.float32) for name, value in params.items()}, inverse=True)


def _torch_params(init, dtype=torch.float32):
    return {name: torch.tensor(value, dtype=dtype, requires_grad=True) for name, value in init.items()}


def _torch_optimizer(params, path, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return l2o.torch.LearnedOptimizer(params.values(), path, **kwargs)


def _run_torch(optimizer, model, params, xs, ys):
    for x, y in zip(xs, ys):
        optimizer.zero_grad()
        _torch_loss(model, params, torch.tensor(x, dtype=params["b" if model == "convnet" else "b1"].dtype),
                    torch.tensor(y)).backward()
        optimizer.step()
    return {name: value.detach().float().numpy() for name, value in params.items()}


# Trained optimizers on both models; untrained ones on the MLP (the convnet adds a 4-D layout, not
# another code path of the rule, except for Muon's width scale, which reads the layout).
CASES = ([((name, "trained"), model) for name in TRAINED for model in SHAPES]
         + [((f"AdafacMLP-{muon}", "trained"), model) for muon in ("muon", "muon-anneal") for model in SHAPES]
         + [((f"AdafacMLP-{options}", "trained"), "mlp") for options in ("normalized", "orthogonal")]
         + [((name, "untrained"), "mlp") for name in UNTRAINED])


@pytest.mark.parametrize("case, model", CASES, ids=["-".join(case) + f"-{model}" for case, model in CASES])
def test_100_steps_give_the_parameters_optax_gives(optimizers, case, model):
    path = optimizers[case]
    init, xs, ys = _problem(model)
    expected = _run_optax(path, model, init, xs, ys)
    params = _torch_params(init)
    got = _run_torch(_torch_optimizer(params, path), model, params, xs, ys)
    moved = max(np.abs(expected[name] - init[name]).max() for name in init)
    assert moved > 1e-3  # the optimizer did something worth comparing
    for name in init:
        np.testing.assert_allclose(got[name], expected[name], rtol=RTOL, atol=ATOL, err_msg=name)


@pytest.mark.parametrize("name, dtype", [("AdafacMLP", torch.float32), ("RNNProp", torch.bfloat16),
                                         ("DM", torch.float32)], ids=str)
def test_resuming_from_a_state_dict_continues_exactly(name, dtype):
    """50 steps, state_dict saved through torch.save, a new optimizer on new parameter tensors
    loads it, 50 more steps: the same bytes as 100 uninterrupted steps (bfloat16 parameters keep
    their float32 state across the round trip)."""
    init, xs, ys = _problem("mlp")
    params = _torch_params(init, dtype)
    uninterrupted = _run_torch(_torch_optimizer(params, TRAINED[name]), "mlp", params, xs, ys)

    params = _torch_params(init, dtype)
    first = _torch_optimizer(params, TRAINED[name])
    _run_torch(first, "mlp", params, xs[:50], ys[:50])
    buffer = io.BytesIO()
    torch.save({"params": {k: v.detach() for k, v in params.items()}, "optimizer": first.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer)
    params = {k: v.clone().requires_grad_(True) for k, v in saved["params"].items()}
    second = _torch_optimizer(params, TRAINED[name])
    second.load_state_dict(saved["optimizer"])
    assert all(value.dtype in (torch.float32,) for state in second.state.values() for value in state.values())
    resumed = _run_torch(second, "mlp", params, xs[50:], ys[50:])
    for key in init:
        np.testing.assert_array_equal(resumed[key], uninterrupted[key], err_msg=key)


@pytest.mark.parametrize("name", TRAINED)
def test_bfloat16_parameters_follow_optax_with_a_float32_state(name):
    """10 steps on bfloat16 parameters as in optax (to a few bfloat16 roundings: the float32
    updates of the two frameworks may round to neighbouring bfloat16 numbers); state in float32."""
    init, xs, ys = _problem("mlp")
    expected = _run_optax(TRAINED[name], "mlp", init, xs[:10], ys[:10], jnp.bfloat16)
    params = _torch_params(init, torch.bfloat16)
    optimizer = _torch_optimizer(params, TRAINED[name])
    got = _run_torch(optimizer, "mlp", params, xs[:10], ys[:10])
    assert {value.dtype for state in optimizer.state.values() for value in state.values()} == {torch.float32}
    assert all(value.dtype == torch.bfloat16 for value in params.values())
    for key in init:
        np.testing.assert_allclose(got[key], expected[key], rtol=2e-2, atol=2e-3, err_msg=key)


def test_parameters_without_gradients_are_left_alone():
    init, xs, ys = _problem("mlp")
    params = _torch_params(init)
    frozen = torch.zeros(5, requires_grad=True)
    optimizer = l2o.torch.LearnedOptimizer([*params.values(), frozen], TRAINED["AdafacMLP"])
    _run_torch(optimizer, "mlp", params, xs[:3], ys[:3])
    assert frozen not in optimizer.state and torch.equal(frozen.detach(), torch.zeros(5))
    assert all(float(optimizer.state[value]["step"]) == 3 for value in params.values())


def test_lr_multiplies_the_update_and_follows_a_scheduler():
    init, xs, ys = _problem("mlp")
    moves = {}
    for lr in (1.0, 0.25):
        params = _torch_params(init)
        _run_torch(l2o.torch.LearnedOptimizer(params.values(), TRAINED["AdafacMLP"], lr=lr), "mlp", params,
                   xs[:1], ys[:1])
        moves[lr] = params["w1"].detach().numpy() - init["w1"]
    np.testing.assert_allclose(moves[0.25], 0.25 * moves[1.0], rtol=1e-5, atol=6e-8)  # a float32 ulp of w1

    params = _torch_params(init)
    optimizer = l2o.torch.LearnedOptimizer(params.values(), TRAINED["AdafacMLP"])
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.0)
    _run_torch(optimizer, "mlp", params, xs[:1], ys[:1])
    scheduler.step()
    after_one = {key: value.detach().clone() for key, value in params.items()}
    _run_torch(optimizer, "mlp", params, xs[1:3], ys[1:3])  # lr is 0 now: nothing moves
    assert all(torch.equal(params[key].detach(), after_one[key]) for key in params)


@pytest.mark.parametrize("model", SHAPES)
def test_told_the_runs_length_torch_and_optax_agree(model):
    """The README's recommended mode in both front ends: the shipped optimizer with its steps
    scaled linearly from 1 to 0 over the run, ``LambdaLR(optimizer, lambda step: 1 - step /
    num_steps)`` in PyTorch and ``learning_rate=optax.linear_schedule(1.0, 0.0, num_steps)`` in
    optax, gives the same parameters after the run, and not those of the constant optimizer."""
    init, xs, ys = _problem(model)
    expected = _run_optax("muon-fastvelo", model, init, xs, ys, learning_rate=optax.linear_schedule(1.0, 0.0, STEPS))
    constant = _run_optax("muon-fastvelo", model, init, xs, ys)
    params = _torch_params(init)
    optimizer = _torch_optimizer(params, "muon-fastvelo")
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / STEPS)
    for x, y in zip(xs, ys):
        _run_torch(optimizer, model, params, x[None], y[None])
        scheduler.step()
    got = {name: value.detach().numpy() for name, value in params.items()}
    assert max(np.abs(expected[name] - constant[name]).max() for name in init) > 1e-3
    for name in init:
        np.testing.assert_allclose(got[name], expected[name], rtol=RTOL, atol=ATOL, err_msg=name)


def test_parameter_groups_each_take_their_own_lr():
    """Two groups, lr 1 and 0 (frozen by its group): the first moves exactly as with one group."""
    init, xs, ys = _problem("mlp")
    params = _torch_params(init)
    alone = _run_torch(l2o.torch.LearnedOptimizer(params.values(), TRAINED["AdafacMLP"]), "mlp", params, xs[:5], ys[:5])
    params = _torch_params(init)
    groups = [{"params": [params["w1"], params["b1"]]}, {"params": [params["w2"], params["b2"]], "lr": 0.0}]
    grouped = _run_torch(l2o.torch.LearnedOptimizer(groups, TRAINED["AdafacMLP"]), "mlp", params, xs[:5], ys[:5])
    np.testing.assert_array_equal(grouped["w2"], init["w2"])
    assert not np.array_equal(grouped["w1"], alone["w1"])  # w2 stayed put, so w1 saw other gradients
    params = _torch_params(init)
    groups = [{"params": [params["w1"], params["b1"]]}, {"params": [params["w2"], params["b2"]]}]
    same = _run_torch(l2o.torch.LearnedOptimizer(groups, TRAINED["AdafacMLP"]), "mlp", params, xs[:5], ys[:5])
    for key in init:
        np.testing.assert_array_equal(same[key], alone[key])


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_non_finite_gradient_skips_the_step(bad):
    init, xs, ys = _problem("mlp")
    params = _torch_params(init)
    optimizer = l2o.torch.LearnedOptimizer(params.values(), TRAINED["RNNProp"])
    _run_torch(optimizer, "mlp", params, xs[:2], ys[:2])
    before = {key: value.detach().clone() for key, value in params.items()}
    state = {key: dict(optimizer.state[value]) for key, value in params.items()}
    optimizer.zero_grad()
    _torch_loss("mlp", params, torch.tensor(xs[2]), torch.tensor(ys[2])).backward()
    params["b2"].grad[0] = bad
    optimizer.step()
    assert optimizer.skipped_steps == 1
    for key, value in params.items():
        assert torch.equal(value.detach(), before[key])
        assert all(tensor is state[key][name] for name, tensor in optimizer.state[value].items())
    assert optimizer.state_dict()["l2o"]["skipped_steps"] == 1


def test_a_state_of_another_optimizer_is_refused():
    init, xs, ys = _problem("mlp")
    params = _torch_params(init)
    optimizer = l2o.torch.LearnedOptimizer(params.values(), TRAINED["AdafacMLP"])
    _run_torch(optimizer, "mlp", params, xs[:1], ys[:1])
    other = l2o.torch.LearnedOptimizer(params.values(), TRAINED["RNNProp"])
    with pytest.raises(l2o.L2OError, match="saved by another optimizer"):
        other.load_state_dict(optimizer.state_dict())
    with pytest.raises(l2o.L2OError, match="not an l2o.torch one"):
        other.load_state_dict(torch.optim.SGD(params.values(), lr=0.1).state_dict())


def test_a_state_for_other_parameters_is_refused_and_changes_nothing():
    """The same optimizer's state, saved for parameters of other shapes: a one-line error, and the
    optimizer keeps its own state."""
    init, xs, ys = _problem("mlp")
    params = _torch_params(init)
    optimizer = l2o.torch.LearnedOptimizer(params.values(), TRAINED["AdafacMLP"])
    _run_torch(optimizer, "mlp", params, xs[:1], ys[:1])
    transposed = {name: torch.tensor(value.T.copy(), requires_grad=True) for name, value in init.items()}
    other = l2o.torch.LearnedOptimizer(transposed.values(), TRAINED["AdafacMLP"])
    other.zero_grad()
    sum(value.sum() for value in transposed.values()).backward()
    other.step()
    before = {id(param): {key: value.clone() for key, value in other.state[param].items()}
              for param in transposed.values()}
    with pytest.raises(l2o.L2OError, match=r"does not fit parameter 0 \(shape \(10, 12\)\)"):
        other.load_state_dict(optimizer.state_dict())
    for param in transposed.values():
        assert all(torch.equal(value, before[id(param)][key]) for key, value in other.state[param].items())


@pytest.mark.parametrize("name", sorted(set(LEARNED) - set(l2o.torch.RULES)))
def test_an_architecture_without_a_torch_rule_is_a_one_line_error(tmp_path, name):
    from helpers.architectures import build

    lopt = build(name)
    save_optimizer(tmp_path, lopt, lopt.init(jax.random.PRNGKey(0)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(l2o.L2OError, match=f"does not run {name} optimizers yet; it runs: DM, RNNProp, AdafacMLP"):
            l2o.torch.LearnedOptimizer([torch.zeros(2, requires_grad=True)], tmp_path)


def test_bad_arguments_are_one_line_errors(tmp_path):
    param = torch.zeros(3, requires_grad=True)
    with pytest.raises(l2o.L2OError, match="lr must be"):
        l2o.torch.LearnedOptimizer([param], TRAINED["AdafacMLP"], lr=-1.0)
    with pytest.raises(l2o.L2OError, match="does not exist"):
        l2o.torch.LearnedOptimizer([param], tmp_path / "missing")
    embedding = torch.nn.Embedding(4, 2, sparse=True)
    optimizer = l2o.torch.LearnedOptimizer(embedding.parameters(), TRAINED["AdafacMLP"])
    embedding(torch.tensor([1])).sum().backward()
    with pytest.raises(l2o.L2OError, match="sparse gradients"):
        optimizer.step()
