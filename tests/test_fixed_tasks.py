"""learned_optimization's fixed tasks: the definitions (against hand-written references on the
same parameters and minibatch) and the convolution (against XLA's). The named tasks' sizes
(learned_optimization's architectures, counted by hand) are checked with the task contract."""

import jax
import numpy as np
import pytest

from l2o.tasks import load_dataset
from l2o.tasks.fixed import conv_pool, conv_same, image_mlp, image_mlp_autoencoder


@pytest.mark.parametrize("size, stride, kernel", [(8, 1, 3), (8, 2, 3), (7, 2, 3), (16, 2, 5), (5, 1, 3)])
def test_sliced_convolution_is_tensorflows_same_convolution(size, stride, kernel):
    rng = np.random.default_rng(size + stride)
    x = rng.normal(size=(2, size, size, 3)).astype(np.float32)
    w = rng.normal(size=(kernel, kernel, 3, 4)).astype(np.float32)
    expected = jax.lax.conv_general_dilated(x, w, (stride, stride), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    np.testing.assert_allclose(conv_same(x, w, stride), expected, rtol=1e-4, atol=1e-4)


def _batch(task_loss_key, count, batch_size):
    return np.asarray(jax.random.randint(task_loss_key, (batch_size,), 0, count))


def _log_softmax(logits):
    logits = logits - logits.max(1, keepdims=True)
    return logits - np.log(np.exp(logits).sum(1, keepdims=True))


def test_definitions_against_hand_written_references():
    """On digits: the MLP classifier, the autoencoder and the pooled convnet compute the losses
    their learned_optimization definitions state, at their initial parameters."""
    data = load_dataset("digits")
    images, labels, key = data.train_images, data.train_labels, jax.random.PRNGKey(3)
    index = _batch(key, len(labels), 16)
    x, y = images[index].reshape(16, -1).astype(np.float64), labels[index]

    mlp = image_mlp("mlp", "digits", (12,), np.tanh, batch_size=16)
    p = mlp.init(jax.random.PRNGKey(0), {})
    hidden = np.tanh(x @ p[0]["w"] + p[0]["b"])
    expected = -np.mean(_log_softmax(hidden @ p[1]["w"] + p[1]["b"])[np.arange(16), y])
    np.testing.assert_allclose(mlp.loss(p, {}, key), expected, rtol=1e-5)
    assert np.all(np.abs(p[0]["w"]) <= 2 / 8 + 1e-7) and np.all(p[0]["b"] == 0)  # Haiku: 2 std of 1/sqrt(64)

    ae = image_mlp_autoencoder("ae", "digits", (8, 4, 8), batch_size=16)
    p = ae.init(jax.random.PRNGKey(1), {})
    h = x
    for layer in p[:-1]:
        h = np.maximum(h @ layer["w"] + layer["b"], 0)
    reconstruction = 1 / (1 + np.exp(-(h @ p[-1]["w"] + p[-1]["b"])))
    np.testing.assert_allclose(ae.loss(p, {}, key), np.mean((x - reconstruction) ** 2), rtol=1e-5)

    conv = conv_pool("conv", "digits", (4, 6), None, batch_size=16)
    p = conv.init(jax.random.PRNGKey(2), {})
    h = images[index]
    for i, layer in enumerate(p["conv"]):
        h = jax.lax.conv_general_dilated(h, layer["w"], (2, 2) if i == 0 else (1, 1), "SAME",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        h = np.maximum(np.asarray(h) + layer["b"], 0)
    logits = h.mean(axis=(1, 2)) @ p["output"]["w"] + p["output"]["b"]
    expected = -np.mean(_log_softmax(np.asarray(logits, np.float64))[np.arange(16), y])
    np.testing.assert_allclose(conv.loss(p, {}, key), expected, rtol=1e-4)
