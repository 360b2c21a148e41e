"""Image classifiers on real data: DeepMind's MNIST MLP and CIFAR-10 convolutional net.

The dataset is loaded once, normalized, and held in device memory; each loss evaluation draws
its minibatch with replacement from its own key (as DeepMind's queues did), so an unroll never
leaves the compiled program. Weights and biases start from N(0, init_stddev^2), DeepMind's
initialization with ``init_stddev = 0.01``.
"""

from __future__ import annotations

import os
from typing import Callable

import jax
import jax.numpy as jnp
import optax

from l2o.draws import draw
from l2o.errors import L2OError
from l2o.tasks.base import Task, positive_int
from l2o.tasks.datasets import Dataset, load_dataset

ACTIVATIONS = {"sigmoid": jax.nn.sigmoid, "relu": jax.nn.relu, "tanh": jnp.tanh}
BATCH_NORM_EPSILON = 1e-3


def _activation(name: str) -> Callable[[jax.Array], jax.Array]:
    if name not in ACTIVATIONS:
        raise L2OError(f"unknown activation {name!r}; choose one of: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def _sizes(name: str, values) -> tuple[int, ...]:
    sizes = tuple(values)
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in sizes):
        raise L2OError(f"{name} must be a list of positive integers, got {list(sizes)!r}")
    return sizes


def _dense(key: jax.Array, n_in: int, n_out: int, stddev: float, bias: bool = True) -> dict:
    key_w, key_b = jax.random.split(key)
    layer = {"w": stddev * draw(jax.random.normal, key_w, (n_in, n_out))}
    if bias:
        layer["b"] = stddev * jax.random.normal(key_b, (n_out,))
    return layer


def _batch_norm(x: jax.Array, offset: jax.Array) -> jax.Array:
    """Normalizes ``x`` over every axis but the last with its own batch statistics, then adds
    ``offset`` (Sonnet's default batch norm: a learned offset, no learned scale)."""
    axes = tuple(range(x.ndim - 1))
    mean = jnp.mean(x, axes)
    variance = jnp.mean(jnp.square(x - mean), axes)
    return (x - mean) * jax.lax.rsqrt(variance + BATCH_NORM_EPSILON) + offset


def _conv_xla(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """SAME convolution, stride 1: ``(N, H, W, C_in)``, ``(k, k, C_in, C_out)`` -> ``(N, H, W, C_out)``."""
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _conv_slices(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """The same convolution as one matmul over ``k * k`` shifted slices of the padded input.

    XLA:CPU runs native convolutions about 15-60x slower inside a loop body (``lax.scan``)
    than outside one (jax-ml/jax#12868); slices, a concatenation and a matmul keep their speed
    there, so this is the default on CPU.
    """
    k, (_, height, width, channels) = kernel.shape[0], x.shape
    low = (k - 1) // 2
    padded = jnp.pad(x, ((0, 0), (low, k - 1 - low), (low, k - 1 - low), (0, 0)))
    columns = jnp.concatenate(
        [padded[:, i:i + height, j:j + width, :] for i in range(k) for j in range(k)], axis=-1
    )
    return columns @ kernel.reshape(k * k * channels, -1)


CONV_IMPLEMENTATIONS = {"xla": _conv_xla, "slices": _conv_slices}


def _max_pool(x: jax.Array) -> jax.Array:
    """2x2 max-pooling with stride 2 on ``(N, H, W, C)``, SAME padding."""
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "SAME")


def classifier_task(
    name: str,
    data: Dataset,
    init: Callable[[jax.Array], dict],
    logits_fn: Callable[[dict, jax.Array], jax.Array],
    batch_size: int,
    test_examples: int | None,
) -> Task:
    """A task from a model (``init(key)``, ``logits_fn(params, images (B, H, W, C)) -> (B, K)``)."""
    batch_size = positive_int("batch_size", batch_size)
    count = data.test_labels.shape[0] if test_examples is None else min(test_examples, data.test_labels.shape[0])
    arrays = tuple(jnp.asarray(a) for a in (data.train_images, data.train_labels,
                                             data.test_images[:count], data.test_labels[:count]))
    steps_per_epoch = -(-data.train_labels.shape[0] // batch_size)
    sample = lambda key: {}
    init_params = lambda key, inst: init(key)

    def over(arrays) -> Task:
        """The task reading ``arrays`` (nothing is computed from them until the task is used)."""

        def loss(params, inst, key):
            del inst
            train_images, train_labels = arrays[:2]
            index = jax.random.randint(key, (batch_size,), 0, train_labels.shape[0])
            logits = logits_fn(params, train_images[index])
            return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, train_labels[index]))

        def test_metrics(params, inst):
            del inst
            test_images, test_labels = arrays[2:]
            logits = logits_fn(params, test_images)
            return {
                "test_loss": jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, test_labels)),
                "test_accuracy": jnp.mean(jnp.argmax(logits, -1) == test_labels),
            }

        return Task(name, sample, init_params, loss, test_metrics, steps_per_epoch, arrays, over)

    return over(arrays)


def mlp_classifier(
    layers=(20,),
    activation: str = "sigmoid",
    dataset: str = "random",
    batch_size: int = 128,
    init_stddev: float = 0.01,
    data_dir: str | os.PathLike | None = None,
    test_examples: int | None = None,
    shuffle_buffer: int | None = None,
) -> Task:
    """A fully connected classifier trained with softmax cross-entropy (DeepMind's ``mnist``).

    Parameters are a list of ``{"w": (n_in, n_out), "b": (n_out,)}`` layers; images are
    flattened to ``(B, H * W * C)``.

    Args:
      layers: hidden layer sizes, e.g. ``[20]``.
      activation: ``sigmoid``, ``relu`` or ``tanh``.
      dataset: a name from :data:`l2o.tasks.datasets.DATASETS`.
      batch_size: examples per minibatch.
      init_stddev: standard deviation of the initial weights and biases.
      data_dir: data directory (default ``$L2O_DATA_DIR`` or the user cache).
      test_examples: test-split examples used by ``test_metrics`` (default all).
      shuffle_buffer: accepted so that Keras-L2O problem specs load as written; minibatches are
        drawn uniformly with replacement, which is what an unbounded shuffle buffer approaches.
    """
    del shuffle_buffer
    act = _activation(activation)
    data = load_dataset(dataset, data_dir)
    sizes = (int(data.train_images[0].size), *_sizes("layers", layers), data.num_classes)

    def init(key):
        keys = jax.random.split(key, len(sizes) - 1)
        return [_dense(k, n_in, n_out, init_stddev) for k, n_in, n_out in zip(keys, sizes[:-1], sizes[1:])]

    def logits_fn(params, images):
        x = images.reshape(images.shape[0], -1)
        for layer in params[:-1]:
            x = act(x @ layer["w"] + layer["b"])
        return x @ params[-1]["w"] + params[-1]["b"]

    return classifier_task("mlp_classifier", data, init, logits_fn, batch_size, test_examples)


def conv_classifier(
    conv_channels=(16, 16, 16),
    linear_layers=(32,),
    kernel_size: int = 5,
    batch_norm: bool = True,
    dataset: str = "cifar10",
    batch_size: int = 128,
    init_stddev: float = 0.01,
    data_dir: str | os.PathLike | None = None,
    test_examples: int | None = 1000,
    conv_impl: str = "auto",
) -> Task:
    """DeepMind's CIFAR-10 network: convolutions, then fully connected layers.

    Each convolution (``kernel_size`` square, stride 1, SAME padding) is followed by batch
    norm, ReLU and 2x2 max-pooling; each hidden linear layer by batch norm and ReLU; a final
    linear layer gives the logits. Batch norm always uses the statistics of the batch at hand.

    Parameters: ``{"conv": [{"w": (k, k, c_in, c_out), "offset": (c_out,)}], "linear":
    [{"w", "offset"}], "output": {"w", "b"}}`` (``"b"`` instead of ``"offset"`` without batch
    norm), so kernels are the paths ``conv/<i>/w``.

    Args:
      conv_channels: output channels of each convolution.
      linear_layers: sizes of the hidden linear layers.
      kernel_size: convolution kernel width and height.
      batch_norm: use batch normalization.
      dataset: a name from :data:`l2o.tasks.datasets.DATASETS`.
      batch_size: examples per minibatch.
      init_stddev: standard deviation of the initial weights and biases.
      data_dir: data directory (default ``$L2O_DATA_DIR`` or the user cache).
      test_examples: test-split examples used by ``test_metrics`` (default 1000; None for all).
      conv_impl: ``xla`` (native convolution), ``slices`` (shifted slices and one matmul, much
        faster inside loops on CPU) or ``auto``: ``slices`` on CPU, else ``xla``.
    """
    if conv_impl == "auto":
        conv_impl = "slices" if jax.default_backend() == "cpu" else "xla"
    if conv_impl not in CONV_IMPLEMENTATIONS:
        raise L2OError(f"unknown conv_impl {conv_impl!r}; choose one of: auto, {', '.join(CONV_IMPLEMENTATIONS)}")
    conv = CONV_IMPLEMENTATIONS[conv_impl]
    conv_channels = _sizes("conv_channels", conv_channels)
    linear_layers = _sizes("linear_layers", linear_layers)
    data = load_dataset(dataset, data_dir)
    height, width, channels = data.train_images.shape[1:]
    bias_name = "offset" if batch_norm else "b"
    for _ in conv_channels:
        height, width = -(-height // 2), -(-width // 2)
    flat = height * width * (conv_channels[-1] if conv_channels else channels)

    def init(key):
        key_conv, key_linear, key_out = jax.random.split(key, 3)
        conv = []
        conv_keys = jax.random.split(key_conv, len(conv_channels))
        for k, c_in, c_out in zip(conv_keys, (channels, *conv_channels), conv_channels):
            key_w, key_b = jax.random.split(k)
            conv.append({"w": init_stddev * draw(jax.random.normal, key_w, (kernel_size, kernel_size, c_in, c_out)),
                         bias_name: init_stddev * jax.random.normal(key_b, (c_out,))})
        linear = []
        linear_keys = jax.random.split(key_linear, len(linear_layers))
        for k, n_in, n_out in zip(linear_keys, (flat, *linear_layers), linear_layers):
            layer = _dense(k, n_in, n_out, init_stddev)
            linear.append({"w": layer["w"], bias_name: layer["b"]})
        n_last = linear_layers[-1] if linear_layers else flat
        return {"conv": conv, "linear": linear, "output": _dense(key_out, n_last, data.num_classes, init_stddev)}

    def normalize(x, layer):
        return _batch_norm(x, layer["offset"]) if batch_norm else x + layer["b"]

    def logits_fn(params, images):
        x = images
        for layer in params["conv"]:
            x = _max_pool(jax.nn.relu(normalize(conv(x, layer["w"]), layer)))
        x = x.reshape(x.shape[0], -1)
        for layer in params["linear"]:
            x = jax.nn.relu(normalize(x @ layer["w"], layer))
        return x @ params["output"]["w"] + params["output"]["b"]

    return classifier_task("conv_classifier", data, init, logits_fn, batch_size, test_examples)
