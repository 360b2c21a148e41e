"""Multi-layer perceptron classifiers (DeepMind's ``mnist`` problem shape)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from l2o.errors import L2OError
from l2o.tasks.base import Task

ACTIVATIONS = {"sigmoid": jax.nn.sigmoid, "relu": jax.nn.relu, "tanh": jnp.tanh}


def random_classification_data(
    key: jax.Array, num_examples: int = 10_000, input_size: int = 784, num_classes: int = 10
) -> tuple[jax.Array, jax.Array]:
    """Random inputs ``U[0, 1)`` of shape ``(num_examples, input_size)`` and random labels.

    Data of MNIST's shape for benchmarks and tests that must not depend on files.
    """
    key_x, key_y = jax.random.split(key)
    images = jax.random.uniform(key_x, (num_examples, input_size))
    labels = jax.random.randint(key_y, (num_examples,), 0, num_classes)
    return images, labels


def mlp_classifier(
    layers: tuple[int, ...] = (20,),
    activation: str = "sigmoid",
    batch_size: int = 128,
    init_stddev: float = 0.01,
    data: tuple[jax.Array, jax.Array] | None = None,
    num_classes: int = 10,
) -> Task:
    """A fully connected classifier trained with softmax cross-entropy on minibatches.

    Weights are drawn from N(0, init_stddev^2) and biases start at zero (DeepMind's
    initialization). The minibatch of ``batch_size`` examples is drawn with replacement from
    ``data`` inside the loss, from the loss's key, so an unroll never leaves the compiled program.

    Args:
      layers: hidden layer sizes.
      activation: ``sigmoid``, ``relu`` or ``tanh``.
      batch_size: examples per minibatch.
      init_stddev: standard deviation of the initial weights.
      data: ``(images (N, D), labels (N,))`` held in device memory; random data of MNIST's
        shape when omitted.
      num_classes: number of output classes.
    """
    if activation not in ACTIVATIONS:
        raise L2OError(f"unknown activation {activation!r}; choose one of: {', '.join(ACTIVATIONS)}")
    act = ACTIVATIONS[activation]
    images, labels = data if data is not None else random_classification_data(jax.random.PRNGKey(0))
    sizes = (images.shape[1], *map(int, layers), num_classes)

    def sample(key):
        del key
        return {}

    def init(key, inst):
        del inst
        keys = jax.random.split(key, len(sizes) - 1)
        return [
            {"w": init_stddev * jax.random.normal(k, (n_in, n_out)), "b": jnp.zeros((n_out,))}
            for k, n_in, n_out in zip(keys, sizes[:-1], sizes[1:])
        ]

    def loss(params, inst, key):
        del inst
        index = jax.random.randint(key, (batch_size,), 0, images.shape[0])
        x = images[index]
        for layer in params[:-1]:
            x = act(x @ layer["w"] + layer["b"])
        logits = x @ params[-1]["w"] + params[-1]["b"]
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels[index]))

    return Task("mlp_classifier", sample, init, loss, loss)
