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
from l2o.tasks.image_mlp_family import small_grey_images


@pytest.fixture(scope="module")
def family():
    return get_task("image_mlp_family", datasets=["digits", "random"], activations=["relu", "tanh"],
                    init_scale_range=[0.5, 2.0], batch_size=8, test_examples=50)


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
    images = {name: small_grey_images(load_dataset(name).train_images, 8) for name in ("digits", "random")}
    labels = {name: load_dataset(name).train_labels for name in ("digits", "random")}
    activations = [lambda x: np.maximum(x, 0), np.tanh]
    seen = set()
    for seed in range(12):
        inst = family.sample(jax.random.PRNGKey(seed))
        params = family.init(jax.random.PRNGKey(100 + seed), inst)
        name = ("digits", "random")[int(inst["dataset"])]
        seen.add((name, int(inst["activation"])))
        key = jax.random.PRNGKey(200 + seed)
        index = np.asarray(jax.random.randint(key, (8,), 0, len(labels[name])))
        hidden = activations[int(inst["activation"])](images[name][index] @ params[0]["w"] + params[0]["b"])
        logits = np.asarray(hidden @ params[1]["w"] + params[1]["b"], np.float64)
        log_softmax = logits - logits.max(1, keepdims=True)
        log_softmax -= np.log(np.exp(log_softmax).sum(1, keepdims=True))
        expected = -np.mean(log_softmax[np.arange(8), labels[name][index]])
        np.testing.assert_allclose(family.loss(params, inst, key), expected, rtol=1e-5)
        scale = float(inst["init_scale"])
        assert 0.5 <= scale <= 2.0 and np.all(np.abs(params[0]["w"]) <= 2 * scale / 8 + 1e-6)  # 2 std of 1/sqrt(64)
    assert len(seen) == 4  # both datasets with both activations


def test_each_autoencoder_instance_reconstructs_with_its_activation():
    """With ``autoencoder``, an instance's loss is the mean squared error between a minibatch of
    its dataset's images and the sigmoid of a hand-written MLP's output of them (the definition
    of learned_optimization's ImageMLPAE tasks), and its test loss the same on the test split."""
    family = get_task("image_mlp_family", datasets=["digits", "random"], activations=["relu", "tanh"],
                      layers=[16, 4, 16], batch_size=8, test_examples=50, autoencoder=True)
    images = {name: small_grey_images(load_dataset(name).train_images, 8) for name in ("digits", "random")}
    tests = {name: small_grey_images(load_dataset(name).test_images[:50], 8) for name in ("digits", "random")}
    activations = [lambda x: np.maximum(x, 0), np.tanh]
    sigmoid = lambda x: 1 / (1 + np.exp(-x))
    seen = set()
    for seed in range(12):
        inst = family.sample(jax.random.PRNGKey(seed))
        params = family.init(jax.random.PRNGKey(100 + seed), inst)
        assert [layer["w"].shape for layer in params] == [(64, 16), (16, 4), (4, 16), (16, 64)]
        name, act = ("digits", "random")[int(inst["dataset"])], activations[int(inst["activation"])]
        seen.add((name, int(inst["activation"])))

        def reconstruction(x, params=params, act=act):
            for layer in params[:-1]:
                x = act(x @ np.asarray(layer["w"], np.float64) + np.asarray(layer["b"], np.float64))
            return sigmoid(x @ np.asarray(params[-1]["w"], np.float64) + np.asarray(params[-1]["b"], np.float64))

        key = jax.random.PRNGKey(200 + seed)
        batch = images[name][np.asarray(jax.random.randint(key, (8,), 0, len(images[name])))]
        np.testing.assert_allclose(family.loss(params, inst, key), np.mean((batch - reconstruction(batch)) ** 2),
                                   rtol=1e-5)
        test = tests[name]
        np.testing.assert_allclose(family.test_metrics(params, inst)["test_loss"],
                                   np.mean((test - reconstruction(test)) ** 2), rtol=1e-5)
    assert len(seen) == 4


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
