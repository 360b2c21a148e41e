"""google/learned_optimization's fixed tasks of the benchmark, re-implemented without TensorFlow.

Each task has learned_optimization's name and definition (``tasks/fixed/image_mlp.py``,
``image_mlp_ae.py`` and ``conv.py``): the same architecture, activation, batch size, image
size, loss, and Haiku's default initialization (weights truncated normal in two standard
deviations of ``1 / sqrt(fan_in)``, biases zero). Images are scaled to [0, 1] and resized
bilinearly without antialiasing, as ``tf.image.resize``.

Deviations, which apply to all of them: minibatches are drawn with replacement from the whole
training split (learned_optimization: shuffled epochs over its first 80%); and the CIFAR-10 of
``../shared/data`` is a 10,000-image JPEG re-encoding, not the official 50,000 images.
"""

from __future__ import annotations

import functools
import os
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from l2o.tasks.base import Task, positive_int
from l2o.tasks.classifiers import classifier_task
from l2o.tasks.datasets import Dataset, load_dataset


def haiku_linear(key: jax.Array, n_in: int, n_out: int, scale: float | jax.Array = 1.0) -> dict:
    """Haiku's default ``Linear`` initialization, ``{"w": (n_in, n_out), "b": (n_out,)}``, times ``scale``."""
    w = jax.random.truncated_normal(key, -2.0, 2.0, (n_in * n_out,)).reshape(n_in, n_out) / np.sqrt(n_in)
    return {"w": scale * w, "b": jnp.zeros((n_out,))}


def haiku_mlp(key: jax.Array, sizes: Sequence[int], scale: float | jax.Array = 1.0) -> list[dict]:
    """An MLP's layers ``[{"w": (sizes[i], sizes[i + 1]), "b": (sizes[i + 1],)}]``, each
    initialized as :func:`haiku_linear` (times ``scale``)."""
    keys = jax.random.split(key, len(sizes) - 1)
    return [haiku_linear(k, n_in, n_out, scale) for k, n_in, n_out in zip(keys, sizes[:-1], sizes[1:])]


def mlp_outputs(layers: list[dict], x: jax.Array, activation: Callable) -> jax.Array:
    """``(N, sizes[0])`` -> ``(N, sizes[-1])``: ``activation`` after every layer but the last."""
    for layer in layers[:-1]:
        x = activation(x @ layer["w"] + layer["b"])
    return x @ layers[-1]["w"] + layers[-1]["b"]


def resized(images: np.ndarray, size: int) -> np.ndarray:
    """``(N, H, W, C)`` images at ``size x size``: bilinear, without antialiasing (``tf.image.resize``)."""
    if images.shape[1:3] == (size, size):
        return images
    shape = (images.shape[0], size, size, images.shape[3])
    return np.asarray(jax.image.resize(jnp.asarray(images), shape, "linear", antialias=False))


def conv_same(x: jax.Array, kernel: jax.Array, stride: int = 1) -> jax.Array:
    """TensorFlow's (and Haiku's) SAME convolution with ``stride``, as one matmul over shifted
    slices (fast inside ``lax.scan`` on CPU, unlike XLA's convolution):
    ``(N, H, W, C_in)``, ``(k, k, C_in, C_out)`` -> ``(N, ceil(H / stride), ceil(W / stride), C_out)``."""
    k, (_, height, width, channels) = kernel.shape[0], x.shape
    out_h, out_w = -(-height // stride), -(-width // stride)
    pad_h, pad_w = max((out_h - 1) * stride + k - height, 0), max((out_w - 1) * stride + k - width, 0)
    padded = jnp.pad(x, ((0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0)))
    columns = jnp.concatenate(
        [padded[:, i:i + (out_h - 1) * stride + 1:stride, j:j + (out_w - 1) * stride + 1:stride, :]
         for i in range(k) for j in range(k)], axis=-1)
    return columns @ kernel.reshape(k * k * channels, -1)


def haiku_conv_pool(key: jax.Array, channels: Sequence[int], num_classes: int,
                    scale: float | jax.Array = 1.0) -> dict:
    """A conv-pool classifier's parameters ``{"conv": [{"w": (3, 3, c_in, c_out), "b": (c_out,)}],
    "output": {"w": (channels[-1], num_classes), "b": (num_classes,)}}`` for ``channels = (image
    channels, *conv widths)``, initialized as Haiku's (fan-in ``9 * c_in``), times ``scale``."""
    keys = jax.random.split(key, len(channels))
    conv = []
    for k, c_in, c_out in zip(keys, channels[:-1], channels[1:]):
        layer = haiku_linear(k, 9 * c_in, c_out, scale)
        conv.append({"w": layer["w"].reshape(3, 3, c_in, c_out), "b": layer["b"]})
    return {"conv": conv, "output": haiku_linear(keys[-1], channels[-1], num_classes, scale)}


def conv_pool_outputs(params: dict, images: jax.Array, activation: Callable) -> jax.Array:
    """``(N, H, W, C)`` -> ``(N, classes)``: 3x3 SAME convolutions (stride 2 for the first, 1
    after), ``activation`` after each, then the spatial mean and the linear read-out."""
    x = images
    for i, layer in enumerate(params["conv"]):
        x = activation(conv_same(x, layer["w"], 2 if i == 0 else 1) + layer["b"])
    return jnp.mean(x, axis=(1, 2)) @ params["output"]["w"] + params["output"]["b"]


def _images(name: str, data_dir, image_size: int | None) -> Dataset:
    data = load_dataset(name, data_dir)
    if image_size is None:
        return data
    return data._replace(train_images=resized(data.train_images, image_size),
                         test_images=resized(data.test_images, image_size))


def image_mlp(name: str, dataset: str, hidden: Sequence[int], activation: Callable = jax.nn.relu,
              batch_size: int = 128, data_dir: str | os.PathLike | None = None,
              test_examples: int | None = 1000) -> Task:
    """learned_optimization's ``_MLPImageTask``: a Haiku MLP classifier on flattened images."""
    data = _images(dataset, data_dir, None)
    sizes = (int(np.prod(data.train_images.shape[1:])), *hidden, data.num_classes)

    init = lambda key: haiku_mlp(key, sizes)
    logits = lambda params, images: mlp_outputs(params, images.reshape(images.shape[0], -1), activation)
    return classifier_task(name, data, init, logits, batch_size, test_examples)


def image_mlp_autoencoder(name: str, dataset: str, hidden: Sequence[int], batch_size: int = 128,
                          data_dir: str | os.PathLike | None = None) -> Task:
    """learned_optimization's ``_fc_ae_loss_fn``: a ReLU MLP from the flattened image back to it;
    the loss is the mean squared error between the image and the sigmoid of the output."""
    batch_size = positive_int("batch_size", batch_size)
    data = _images(dataset, data_dir, None)
    train = jnp.asarray(data.train_images.reshape(data.train_images.shape[0], -1))
    sizes = (train.shape[1], *hidden, train.shape[1])

    init = lambda key, inst: haiku_mlp(key, sizes)

    def over(images) -> Task:
        def loss(params, inst, key):
            x = images[jax.random.randint(key, (batch_size,), 0, images.shape[0])]
            reconstruction = jax.nn.sigmoid(mlp_outputs(params, x, jax.nn.relu))
            return jnp.mean(jnp.square(x - reconstruction))

        return Task(name, lambda key: {}, init, loss, None, -(-images.shape[0] // batch_size), images, over)

    return over(train)


def conv_pool(name: str, dataset: str, channels: Sequence[int], image_size: int | None, batch_size: int = 128,
              data_dir: str | os.PathLike | None = None, test_examples: int | None = 1000) -> Task:
    """learned_optimization's ``_cross_entropy_pool_loss``: 3x3 SAME convolutions (stride 2 for
    the first, 1 after), each followed by ReLU, then the spatial mean and a linear read-out."""
    data = _images(dataset, data_dir, image_size)
    sizes = (data.train_images.shape[3], *channels)

    init = lambda key: haiku_conv_pool(key, sizes, data.num_classes)
    logits = lambda params, images: conv_pool_outputs(params, images, jax.nn.relu)
    return classifier_task(name, data, init, logits, batch_size, test_examples)


# learned_optimization's names -> constructors taking ``data_dir`` (and ``test_examples``).
FIXED_TASKS: dict[str, Callable[..., Task]] = {
    "ImageMLP_FashionMnist_Relu128x128": functools.partial(
        image_mlp, "ImageMLP_FashionMnist_Relu128x128", "fashion_mnist", (128, 128)),
    "ImageMLP_Mnist_128x128x128_Relu": functools.partial(
        image_mlp, "ImageMLP_Mnist_128x128x128_Relu", "mnist", (128, 128, 128)),
    "ImageMLP_Cifar10_128x128x128_Tanh_bs128": functools.partial(
        image_mlp, "ImageMLP_Cifar10_128x128x128_Tanh_bs128", "cifar10", (128, 128, 128), jnp.tanh),
    "ImageMLPAE_Mnist_128x32x128_bs128": functools.partial(
        image_mlp_autoencoder, "ImageMLPAE_Mnist_128x32x128_bs128", "mnist", (128, 32, 128)),
    "ImageMLPAE_FashionMnist_128x32x128_bs128": functools.partial(
        image_mlp_autoencoder, "ImageMLPAE_FashionMnist_128x32x128_bs128", "fashion_mnist", (128, 32, 128)),
    "Conv_Cifar10_8_16x32": functools.partial(conv_pool, "Conv_Cifar10_8_16x32", "cifar10", (16, 32), 8),
    "Conv_Cifar10_16_32x64x64": functools.partial(conv_pool, "Conv_Cifar10_16_32x64x64", "cifar10", (32, 64, 64), 16),
}
