"""Distributions of small image networks: MLP classifiers, MLP autoencoders and convnets, each of
one shape over several datasets, activations and initial scales, compiled as one program.

Every instance of a family has the same parameter shapes, so a population that mixes
datasets, activations and initial scales is one vmapped program: what an instance draws
(which dataset, which activation, which scale) is data, not structure. The datasets are held
stacked and padded, ``(D, N_max, H * W)``, each minibatch drawn with replacement from the
instance's own dataset. Distributions over *shapes* (widths, depths, batch sizes) are several
such families, one compiled program each (``extra_problems`` in the configuration).

``fast_velo`` is the distribution of VeLO's ``fast_mlp_diff_data`` (learned_optimization's
``jun24_fast_mlp_diff_data_task_list``), which Celo meta-trains on: an MLP with one hidden
layer of 32 ReLU units, batch 64, on 8x8 grey images of MNIST, Fashion-MNIST, CIFAR-10 and
SVHN. **Deviations:** SVHN cannot be downloaded here, so scikit-learn's 8x8 digits take its
place; minibatches come from the whole training split with replacement (learned_optimization:
epochs over the first 80% of it). Images are downsampled from the official files when they are loaded (bilinear, without
antialiasing, as ``tf.image.resize``; colour to grey with ``tf.image.rgb_to_grayscale``'s
weights); nothing downsampled is stored.
"""

from __future__ import annotations

import os
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from l2o.errors import L2OError
from l2o.tasks.base import Task, positive_int
from l2o.tasks.classifiers import ACTIVATIONS
from l2o.tasks.datasets import load_dataset
from l2o.tasks.fixed import conv_pool_outputs, haiku_conv_pool, haiku_mlp, mlp_outputs, resized

FAST_VELO_DATASETS = ("mnist", "fashion_mnist", "cifar10", "digits")
GREY_WEIGHTS = np.array([0.2989, 0.5870, 0.1140], np.float32)  # tf.image.rgb_to_grayscale


def small_grey_images(images: np.ndarray, size: int) -> np.ndarray:
    """``(N, H, W, C)`` images in [0, 1] as ``(N, size * size)`` grey ones: resized
    (:func:`l2o.tasks.fixed.resized`), then luminance for colour images."""
    images = resized(images, size)
    if images.shape[3] == 3:
        images = images @ GREY_WEIGHTS
    return images.reshape(images.shape[0], size * size).astype(np.float32)


def _stacked(arrays: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Arrays of different lengths as one zero-padded ``(D, N_max, ...)`` array and the lengths ``(D,)``."""
    longest = max(len(a) for a in arrays)
    padded = [np.concatenate([a, np.zeros((longest - len(a), *a.shape[1:]), a.dtype)]) for a in arrays]
    return np.stack(padded), np.array([len(a) for a in arrays], np.int32)


def _stacked_splits(datasets: Sequence[str], image_size: int, data_dir, test_examples: int) -> tuple[tuple, int]:
    """The datasets' small grey splits stacked: ``(train images (D, N, F), train labels (D, N),
    train lengths (D,), test images, test labels, test lengths)`` as device arrays, and the
    number of classes they share."""
    loaded = [load_dataset(name, data_dir) for name in datasets]
    if len({data.num_classes for data in loaded}) > 1:
        raise L2OError(f"datasets {', '.join(datasets)} have different numbers of classes; pick datasets alike")
    train_images, train_counts = _stacked([small_grey_images(d.train_images, image_size) for d in loaded])
    train_labels, _ = _stacked([d.train_labels for d in loaded])
    test_images, test_counts = _stacked([small_grey_images(d.test_images[:test_examples], image_size) for d in loaded])
    test_labels, _ = _stacked([d.test_labels[:test_examples] for d in loaded])
    arrays = (train_images, train_labels, train_counts, test_images, test_labels, test_counts)
    return tuple(jnp.asarray(a) for a in arrays), loaded[0].num_classes


def _image_family(
    name: str,
    datasets: Sequence[str],
    image_size: int,
    activations: Sequence[str],
    batch_size: int,
    init_scale_range: Sequence[float],
    data_dir,
    test_examples: int,
    init_params,
    outputs,
    autoencoder: bool,
) -> Task:
    """The family ``name`` over the small grey images of ``datasets``.

    ``init_params(key, scale, num_classes)`` draws an instance's parameters; ``outputs(params,
    activation, images)`` maps images ``(B, image_size ** 2)`` to ``(B, outputs)``, with
    ``activation`` the instance's. An instance draws, uniformly, one of ``datasets`` and one of
    ``activations``, and an initial scale log-uniform in ``init_scale_range``.
    """
    if not datasets or not activations:
        raise L2OError(f"{name} needs at least one dataset and one activation")
    batch_size = positive_int("batch_size", batch_size)
    unknown = [activation for activation in activations if activation not in ACTIVATIONS]
    if unknown:
        raise L2OError(f"unknown activation {unknown[0]!r}; choose from {', '.join(ACTIVATIONS)}")
    functions = [ACTIVATIONS[activation] for activation in activations]
    low, high = (float(value) for value in init_scale_range)
    if not 0 < low <= high:
        raise L2OError(f"init_scale_range must be 0 < low <= high, got {list(init_scale_range)}")
    arrays, num_classes = _stacked_splits(datasets, image_size, data_dir, test_examples)

    def sample(key):
        key_dataset, key_activation, key_scale = jax.random.split(key, 3)
        return {"dataset": jax.random.randint(key_dataset, (), 0, len(datasets)),
                "activation": jax.random.randint(key_activation, (), 0, len(activations)),
                "init_scale": jnp.exp(jax.random.uniform(key_scale, (), minval=np.log(low), maxval=np.log(high)))}

    def init(key, inst):
        return init_params(key, inst["init_scale"], num_classes)

    def logits(params, inst, images):
        return outputs(params, lambda x: jax.lax.switch(inst["activation"], functions, x), images)

    def over(arrays) -> Task:
        """The family reading ``arrays`` (stacked training and test splits, and their lengths)."""
        train_x, train_y, train_n, test_x, test_y, test_n = arrays

        def example_losses(params, inst, images, labels):
            """``(B,)`` losses of images ``(B, pixels)`` with labels ``(B,)``."""
            predicted = logits(params, inst, images)
            if autoencoder:
                return jnp.mean(jnp.square(images - jax.nn.sigmoid(predicted)), axis=-1)
            return optax.softmax_cross_entropy_with_integer_labels(predicted, labels)

        def loss(params, inst, key):
            index = jax.random.randint(key, (batch_size,), 0, train_n[inst["dataset"]])
            return jnp.mean(example_losses(params, inst, train_x[inst["dataset"], index],
                                           train_y[inst["dataset"], index]))

        def test_metrics(params, inst):
            images, labels = test_x[inst["dataset"]], test_y[inst["dataset"]]
            mask = jnp.arange(labels.shape[0]) < test_n[inst["dataset"]]
            mean = lambda values: jnp.sum(jnp.where(mask, values, 0.0)) / jnp.sum(mask)
            metrics = {"test_loss": mean(example_losses(params, inst, images, labels))}
            if not autoencoder:
                metrics["test_accuracy"] = mean(jnp.argmax(logits(params, inst, images), -1) == labels)
            return metrics

        return Task(name, sample, init, loss, test_metrics, None, arrays, over)

    return over(arrays)


def image_mlp_family(
    datasets: Sequence[str] = FAST_VELO_DATASETS,
    image_size: int = 8,
    layers: Sequence[int] = (32,),
    activations: Sequence[str] = ("relu",),
    batch_size: int = 64,
    init_scale_range: Sequence[float] = (1.0, 1.0),
    data_dir: str | os.PathLike | None = None,
    test_examples: int = 1000,
    autoencoder: bool = False,
) -> Task:
    """MLP classifiers (or, with ``autoencoder``, MLP autoencoders) of one shape over a
    distribution of datasets, activations and scales.

    Each instance draws, uniformly, one of ``datasets`` and one of ``activations``, and an
    initial scale log-uniform in ``init_scale_range`` (multiplying Haiku's default weights).
    Parameters are ``[{"w": (n_in, n_out), "b": (n_out,)}]`` with ``n_in = image_size ** 2``
    first; minibatches of ``batch_size`` are drawn with replacement from the instance's
    training split; ``test_metrics`` use the first ``test_examples`` of its test split. A
    classifier ends in one output per class and is trained with softmax cross-entropy; an
    autoencoder ends in ``image_size ** 2`` outputs and is trained, as learned_optimization's
    ``ImageMLPAE`` tasks, on the mean squared error between the image and their sigmoid.
    """
    size = positive_int("image_size", image_size)
    pixels = size * size
    hidden = tuple(positive_int("layers", width) for width in layers)

    def init_params(key, scale, num_classes):
        return haiku_mlp(key, (pixels, *hidden, pixels if autoencoder else num_classes), scale)

    return _image_family("image_mlp_family", datasets, size, activations, batch_size, init_scale_range,
                         data_dir, test_examples, init_params,
                         lambda params, activation, images: mlp_outputs(params, images, activation), autoencoder)


def image_conv_family(
    datasets: Sequence[str] = FAST_VELO_DATASETS,
    image_size: int = 8,
    channels: Sequence[int] = (16, 32),
    activations: Sequence[str] = ("relu",),
    batch_size: int = 64,
    init_scale_range: Sequence[float] = (1.0, 1.0),
    data_dir: str | os.PathLike | None = None,
    test_examples: int = 1000,
) -> Task:
    """Convnet classifiers of one shape over a distribution of datasets, activations and scales:
    learned_optimization's ``Conv_*`` architecture (``_cross_entropy_pool_loss``, as
    :func:`l2o.tasks.fixed.conv_pool`) on grey images, with the instance's activation.

    3x3 SAME convolutions with ``channels`` outputs (stride 2 for the first, 1 after), each
    followed by the activation, then the spatial mean and a linear read-out. Parameters are
    ``{"conv": [{"w": (3, 3, c_in, c_out), "b": (c_out,)}], "output": {"w": (channels[-1],
    classes), "b": (classes,)}}`` with ``c_in = 1`` first, initialized as Haiku's (times the
    instance's scale). What each instance draws, and how minibatches and test metrics are
    taken, is as in :func:`image_mlp_family`.
    """
    size = positive_int("image_size", image_size)
    widths = (1, *(positive_int("channels", width) for width in channels))
    if len(widths) < 2:
        raise L2OError("image_conv_family needs at least one convolution; pass e.g. channels=[16, 32]")

    def init_params(key, scale, num_classes):
        return haiku_conv_pool(key, widths, num_classes, scale)

    def outputs(params, activation, images):
        return conv_pool_outputs(params, images.reshape(images.shape[0], size, size, 1), activation)

    return _image_family("image_conv_family", datasets, size, activations, batch_size, init_scale_range,
                         data_dir, test_examples, init_params, outputs, False)
