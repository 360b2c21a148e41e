"""The distribution of small image classifiers: one program for many datasets, activations and
scales; each instance computes exactly the classifier it names."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from l2o.config import TrainConfig
from l2o.errors import L2OError
from l2o.meta import MetaTrainer
from l2o.tasks import get_task, load_dataset
from l2o.tasks.image_families import small_grey_images


@pytest.fixture(scope="module")
def family():
    return get_task("image_mlp_family", datasets=["digits", "random"], activations=["relu", "tanh"],
                    init_scale_range=[0.5, 2.0], batch_size=8, test_examples=50)


DATASETS = ("digits", "random")
ACTIVATIONS = (lambda x: np.maximum(x, 0), np.tanh)  # the families' "relu", "tanh"


def _instances(family, batch_size: int = 8):
    """Twelve instances of a family over ``DATASETS`` and ``ACTIVATIONS``, each as ``(inst,
    params, dataset name, activation function, minibatch key, minibatch indices)``; checks
    that every dataset met every activation."""
    seen = set()
    for seed in range(12):
        inst = family.sample(jax.random.PRNGKey(seed))
        params = family.init(jax.random.PRNGKey(100 + seed), inst)
        name = DATASETS[int(inst["dataset"])]
        seen.add((name, int(inst["activation"])))
        key = jax.random.PRNGKey(200 + seed)
        index = np.asarray(jax.random.randint(key, (batch_size,), 0, len(load_dataset(name).train_labels)))
        yield inst, params, name, ACTIVATIONS[int(inst["activation"])], key, index
    assert len(seen) == 4  # both datasets with both activations


def _cross_entropy(logits, labels: np.ndarray) -> float:
    """Mean softmax cross-entropy of ``(B, classes)`` logits, in float64."""
    logits = np.asarray(logits, np.float64)
    log_softmax = logits - logits.max(1, keepdims=True)
    log_softmax -= np.log(np.exp(log_softmax).sum(1, keepdims=True))
    return -np.mean(log_softmax[np.arange(len(labels)), labels])


def test_downsampling_is_bilinear_and_grey():
    """Constant images stay constant, an 8x8 image is kept as it is, a 2x2 block average is what
    bilinear resizing by 2 gives on even pixels, and colour becomes luminance."""
    rng = np.random.default_rng(0)
    digits = load_dataset("digits").train_images[:5]
    np.testing.assert_array_equal(small_grey_images(digits, 8), digits.reshape(5, 64))
    np.testing.assert_allclose(small_grey_images(np.full((2, 28, 28, 1), 0.3, np.float32), 8), 0.3, rtol=1e-6)
    image = rng.uniform(size=(1, 16, 16, 1)).astype(np.float32)
    block_means = image.reshape(1, 8, 2, 8, 2, 1).mean(axis=(2, 4)).reshape(1, 64)
    np.testing.assert_allclose(small_grey_images(image, 8), block_means, rtol=1e-5)
    colour = rng.uniform(size=(3, 8, 8, 3)).astype(np.float32)
    luminance = 0.2989 * colour[..., 0] + 0.587 * colour[..., 1] + 0.114 * colour[..., 2]
    np.testing.assert_allclose(small_grey_images(colour, 8), luminance.reshape(3, 64), rtol=1e-5)


def test_each_instance_is_the_classifier_it_names(family):
    """Loss and test loss of an instance equal a hand-written MLP on that instance's dataset,
    with its activation and the same minibatch indices."""
    images = {name: small_grey_images(load_dataset(name).train_images, 8) for name in DATASETS}
    labels = {name: load_dataset(name).train_labels for name in DATASETS}
    for inst, params, name, act, key, index in _instances(family):
        hidden = act(images[name][index] @ params[0]["w"] + params[0]["b"])
        expected = _cross_entropy(hidden @ params[1]["w"] + params[1]["b"], labels[name][index])
        np.testing.assert_allclose(family.loss(params, inst, key), expected, rtol=1e-5)
        scale = float(inst["init_scale"])
        assert 0.5 <= scale <= 2.0 and np.all(np.abs(params[0]["w"]) <= 2 * scale / 8 + 1e-6)  # 2 std of 1/sqrt(64)


def test_each_autoencoder_instance_reconstructs_with_its_activation():
    """With ``autoencoder``, an instance's loss is the mean squared error between a minibatch of
    its dataset's images and the sigmoid of a hand-written MLP's output of them (the definition
    of learned_optimization's ImageMLPAE tasks), and its test loss the same on the test split."""
    family = get_task("image_mlp_family", datasets=["digits", "random"], activations=["relu", "tanh"],
                      layers=[16, 4, 16], batch_size=8, test_examples=50, autoencoder=True)
    images = {name: small_grey_images(load_dataset(name).train_images, 8) for name in DATASETS}
    tests = {name: small_grey_images(load_dataset(name).test_images[:50], 8) for name in DATASETS}
    sigmoid = lambda x: 1 / (1 + np.exp(-x))
    for inst, params, name, act, key, index in _instances(family):
        assert [layer["w"].shape for layer in params] == [(64, 16), (16, 4), (4, 16), (16, 64)]

        def reconstruction(x, params=params, act=act):
            for layer in params[:-1]:
                x = act(x @ np.asarray(layer["w"], np.float64) + np.asarray(layer["b"], np.float64))
            return sigmoid(x @ np.asarray(params[-1]["w"], np.float64) + np.asarray(params[-1]["b"], np.float64))

        batch = images[name][index]
        np.testing.assert_allclose(family.loss(params, inst, key), np.mean((batch - reconstruction(batch)) ** 2),
                                   rtol=1e-5)
        test = tests[name]
        np.testing.assert_allclose(family.test_metrics(params, inst)["test_loss"],
                                   np.mean((test - reconstruction(test)) ** 2), rtol=1e-5)


def test_a_mixed_population_is_one_program(family):
    """Instances that differ in dataset, activation and scale run in one vmapped, jitted loss."""
    keys = jax.random.split(jax.random.PRNGKey(0), 16)
    insts = jax.vmap(family.sample)(keys)
    params = jax.vmap(family.init)(keys, insts)
    losses = jax.jit(jax.vmap(lambda p, i, k: family.loss(p, i, k)))(params, insts, keys)
    assert losses.shape == (16,) and np.all(np.isfinite(losses))
    assert len(set(np.asarray(insts["dataset"]).tolist())) == 2


def test_bad_family_options_are_one_line():
    with pytest.raises(L2OError, match="unknown activation 'gelu'"):
        get_task("image_mlp_family", datasets=["digits"], activations=["gelu"])
    with pytest.raises(L2OError, match="init_scale_range"):
        get_task("image_mlp_family", datasets=["digits"], init_scale_range=[2.0, 1.0])


def test_meta_training_samples_the_distribution_with_pes():
    config = TrainConfig(problem="image_mlp_family",
                         problem_options={"datasets": ["digits"], "activations": ["relu", "tanh"], "batch_size": 8,
                                          "test_examples": 20},
                         augmentation={"scale_range": [0.01, 100.0], "levels": ["tensor"]},
                         optimizer_options={"layers": [4]},
                         estimator="pes", num_epochs=1, num_steps=6, unroll_length=3, n_samplings=2,
                         evaluation_epochs=4)
    result = MetaTrainer(config).train(progress=False)
    assert np.isfinite(result.best_score) and result.meta_iterations == 2
    assert jnp.all(jnp.isfinite(jax.flatten_util.ravel_pytree(result.last_theta)[0]))


def _same_convolution(images: np.ndarray, kernel: np.ndarray, stride: int) -> np.ndarray:
    """TensorFlow's SAME convolution by its definition, position by position, in float64:
    ``(N, H, W, C_in)``, ``(k, k, C_in, C_out)`` -> ``(N, ceil(H / stride), ceil(W / stride), C_out)``."""
    k, (count, height, width, _) = kernel.shape[0], images.shape
    out_h, out_w = -(-height // stride), -(-width // stride)
    pad_h, pad_w = max((out_h - 1) * stride + k - height, 0), max((out_w - 1) * stride + k - width, 0)
    padded = np.pad(images, ((0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0)))
    out = np.zeros((count, out_h, out_w, kernel.shape[3]))
    for i in range(out_h):
        for j in range(out_w):
            window = padded[:, i * stride:i * stride + k, j * stride:j * stride + k, :]
            out[:, i, j] = np.einsum("nabc,abcd->nd", window, kernel)
    return out


def test_each_convnet_instance_is_the_convnet_it_names():
    """An instance of ``image_conv_family`` computes learned_optimization's conv-pool classifier
    (3x3 SAME convolutions, the first with stride 2, the instance's activation after each, spatial
    mean, linear read-out) on its own dataset's grey images, written here by the definition; its
    weights start within Haiku's two standard deviations of ``scale / sqrt(fan_in)``."""
    family = get_task("image_conv_family", datasets=["digits", "random"], activations=["relu", "tanh"],
                      channels=[4, 6, 5], init_scale_range=[0.5, 2.0], batch_size=8, test_examples=50)
    images = {name: small_grey_images(load_dataset(name).train_images, 8) for name in DATASETS}
    labels = {name: load_dataset(name).train_labels for name in DATASETS}
    for inst, params, name, act, key, index in _instances(family):
        assert [layer["w"].shape for layer in params["conv"]] == [(3, 3, 1, 4), (3, 3, 4, 6), (3, 3, 6, 5)]
        assert params["output"]["w"].shape == (5, 10)
        x = images[name][index].reshape(8, 8, 8, 1).astype(np.float64)
        for i, layer in enumerate(params["conv"]):
            x = act(_same_convolution(x, np.asarray(layer["w"], np.float64), 2 if i == 0 else 1)
                    + np.asarray(layer["b"], np.float64))
        assert x.shape == (8, 4, 4, 5)
        expected = _cross_entropy(x.mean(axis=(1, 2)) @ np.asarray(params["output"]["w"], np.float64)
                                  + np.asarray(params["output"]["b"]), labels[name][index])
        np.testing.assert_allclose(family.loss(params, inst, key), expected, rtol=1e-5)
        scale = float(inst["init_scale"])
        assert np.all(np.abs(params["conv"][1]["w"]) <= 2 * scale / np.sqrt(9 * 4) + 1e-6)
        assert np.abs(params["conv"][1]["w"]).max() > 0.5 * scale / np.sqrt(9 * 4)


def test_a_convnet_family_meta_trains_beside_an_mlp_family():
    """A convnet family is one more compiled program beside an MLP family: PES meta-training over
    both, with augmentation, runs and validates to finite numbers."""
    config = TrainConfig(problem="image_mlp_family",
                         problem_options={"datasets": ["digits"], "batch_size": 8, "test_examples": 20},
                         extra_problems=[{"name": "image_conv_family",
                                          "options": {"datasets": ["digits"], "channels": [4, 4], "batch_size": 8,
                                                      "activations": ["relu", "tanh"], "test_examples": 20}}],
                         augmentation={"scale_range": [0.01, 100.0], "levels": ["tensor"]},
                         optimizer_options={"layers": [4]},
                         estimator="pes", num_epochs=1, num_steps=6, unroll_length=3, n_samplings=2,
                         evaluation_epochs=4)
    result = MetaTrainer(config).train(progress=False)
    assert np.isfinite(result.best_score) and result.meta_iterations == 4  # two per family
    validations = [entry["validation_by_problem"] for entry in result.history if "validation_by_problem" in entry]
    assert validations and all(len(scores) == 2 and np.all(np.isfinite(scores)) for scores in validations)
    assert jnp.all(jnp.isfinite(jax.flatten_util.ravel_pytree(result.last_theta)[0]))


def test_bad_convnet_options_are_one_line():
    with pytest.raises(L2OError, match="at least one convolution"):
        get_task("image_conv_family", datasets=["digits"], channels=[])
    with pytest.raises(L2OError, match="channels must be a positive integer"):
        get_task("image_conv_family", datasets=["digits"], channels=[0])
