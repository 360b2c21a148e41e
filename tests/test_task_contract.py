"""Contract of every named problem (``l2o.tasks.TASKS``), run over the registry so that a new
entry is covered the day it is added: instances draw in a batch, the loss is a finite scalar
whose gradient has the parameters' structure and is finite, the task passes through ``jit`` as
an argument (its data an input, not a constant), and held-out metrics, where a task has them,
are finite."""

import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from l2o.errors import L2OError
from l2o.tasks import TASKS, draw_problems, get_task
from l2o.tasks.fixed import FIXED_TASKS

DATA = Path(os.environ.get("L2O_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))
# Small settings where a problem's defaults are large; the data folder where it reads files.
OPTIONS = {
    "mnist": {"data_dir": str(DATA), "batch_size": 16},
    "cifar": {"data_dir": str(DATA), "batch_size": 4},
    "cifar-multi": {"data_dir": str(DATA), "batch_size": 4},
    "mlp_classifier": {"dataset": "digits", "batch_size": 16},
    "conv_classifier": {"dataset": "digits", "batch_size": 4},
    "image_mlp_family": {"datasets": ["digits"], "batch_size": 8},
    "image_conv_family": {"datasets": ["digits"], "batch_size": 8},
    "fast_velo": {"data_dir": str(DATA), "test_examples": 100},
    **{name: {"data_dir": str(DATA)} for name in FIXED_TASKS},
}


# Parameter counts of learned_optimization's architectures, by hand (weights + biases per layer).
SIZES = {
    "ImageMLP_FashionMnist_Relu128x128": (784 * 128 + 128) + (128 * 128 + 128) + (128 * 10 + 10),
    "ImageMLP_Mnist_128x128x128_Relu": (784 * 128 + 128) + 2 * (128 * 128 + 128) + (128 * 10 + 10),
    "ImageMLP_Cifar10_128x128x128_Tanh_bs128": (3072 * 128 + 128) + 2 * (128 * 128 + 128) + (128 * 10 + 10),
    "ImageMLPAE_Mnist_128x32x128_bs128": (784 * 128 + 128) + (128 * 32 + 32) + (32 * 128 + 128) + (128 * 784 + 784),
    "ImageMLPAE_FashionMnist_128x32x128_bs128": (784 * 128 + 128) + (128 * 32 + 32) + (32 * 128 + 128)
    + (128 * 784 + 784),
    "Conv_Cifar10_8_16x32": (27 * 16 + 16) + (144 * 32 + 32) + (32 * 10 + 10),
    "Conv_Cifar10_16_32x64x64": (27 * 32 + 32) + (288 * 64 + 64) + (576 * 64 + 64) + (64 * 10 + 10),
}


def test_the_sizes_cover_every_fixed_task():
    assert set(SIZES) == set(FIXED_TASKS)


@pytest.mark.parametrize("name", TASKS)
def test_every_named_problem_meets_the_task_contract(name):
    try:
        task = get_task(name, **OPTIONS.get(name, {}))
    except L2OError as error:  # a dataset whose files are not on this machine
        pytest.skip(str(error))
    insts, params, keys = draw_problems(task, jax.random.PRNGKey(0), 2)
    if name in SIZES:  # learned_optimization's architecture, parameter for parameter
        assert sum(int(np.prod(leaf.shape[1:])) for leaf in jax.tree.leaves(params)) == SIZES[name]
    assert {leaf.shape[0] for leaf in jax.tree.leaves((insts, params, keys))} == {2}

    @jax.jit
    def loss_and_grad(task, inst, params, key):
        return jax.value_and_grad(lambda p: task.loss(p, inst, key))(params)

    for i in range(2):
        inst, start, key = jax.tree.map(lambda a, i=i: a[i], (insts, params, keys))
        loss, grads = loss_and_grad(task, inst, start, key)
        assert jnp.shape(loss) == () and np.isfinite(float(loss)), name
        assert jax.tree.structure(grads) == jax.tree.structure(start), name
        assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(grads)), name
    if task.test_metrics is not None:
        metrics = jax.jit(lambda task, params, inst: task.test_metrics(params, inst))(task, start, inst)
        assert metrics and all(np.isfinite(float(value)) for value in metrics.values()), name
