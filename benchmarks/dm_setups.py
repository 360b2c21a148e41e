"""The same DeepMind meta-training in JAX (l2o's own API) and in PyTorch eager
(``torch_reference.py``), started from identical weights, instances and inner states.

Shared by the throughput benchmark (``meta_train_throughput.py``) and the equivalence check
(``torch_equivalence.py``, also run by ``tests/test_torch_equivalence.py`` when torch is installed).
"""

from __future__ import annotations

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

import l2o.meta
import l2o.optimizers
import l2o.tasks
from l2o.meta import TruncatedBPTT, make_meta_step
from l2o.meta.truncated import truncated_bptt_loss

sys.path.insert(0, str(Path(__file__).resolve().parent))

LSTM_LAYERS = (20, 20)
NUM_FEATURES = 2  # LogAndSign
BATCH = 128
QUAD_DIMS = 10
MLP_SIZES = (784, 20, 10)


def import_torch():
    """The torch reference, or None (with a hint) when torch is not installed."""
    try:
        import torch  # noqa: F401
        import torch_reference
    except ImportError as error:  # torch is an optional extra
        print(f"torch not available ({error}); install it with `pip install -e '.[bench]'`.")
        return None, None
    return torch, torch_reference


def make_lopt():
    return l2o.optimizers.DM(layers=LSTM_LAYERS, preprocess="log_sign", output_scale=0.1)


def make_meta_optimizer():
    return optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-3))


# Benchmark shapes: the quadratic, and the MNIST-shaped MLP on random data or on MNIST itself.
MLP_DATASETS = {"mlp": "random", "mnist": "mnist"}


def make_task(shape: str):
    if shape == "quadratic":
        return l2o.tasks.quadratic(num_dims=QUAD_DIMS, batch_size=BATCH)
    return l2o.tasks.mlp_classifier(
        layers=MLP_SIZES[1:-1], activation="sigmoid", batch_size=BATCH, dataset=MLP_DATASETS[shape]
    )


def mlp_data(shape: str):
    """The training split ``mlp_classifier`` draws from, flattened: ``(N, 784)``, ``(N,)``."""
    data = l2o.tasks.load_dataset(MLP_DATASETS[shape])
    return data.train_images.reshape(len(data.train_labels), -1), data.train_labels


class JaxSetup:
    """l2o's jitted meta-step with its initial meta-parameters and population states."""

    def __init__(self, shape: str, population: int, unroll: int, horizon: int, seed: int):
        self.shape, self.population = shape, population
        self.task = make_task(shape)
        self.lopt = make_lopt()
        key = jax.random.PRNGKey(seed)
        self.theta = self.lopt.init(jax.random.fold_in(key, 0))
        self.meta_optimizer = make_meta_optimizer()
        self.meta_opt_state = self.meta_optimizer.init(self.theta)
        estimator = TruncatedBPTT(self.task, self.lopt, unroll_length=unroll, horizon=horizon)
        self.step = make_meta_step(estimator, self.meta_optimizer)
        # The loss whose gradient the estimator takes, for --check.
        self.population_loss = truncated_bptt_loss(self.task, self.lopt, unroll_length=unroll, horizon=horizon)
        self.states = estimator.init_states(self.theta, jax.random.fold_in(key, 1), population)
        self.key = jax.random.fold_in(key, 2)  # unused by truncated BPTT

    def run(self, meta_steps: int) -> None:
        theta, opt_state, states = self.theta, self.meta_opt_state, self.states
        for _ in range(meta_steps):
            theta, opt_state, states, metrics = self.step(theta, opt_state, states, self.key)
        jax.block_until_ready((theta, opt_state, states, metrics))
        self.theta, self.meta_opt_state, self.states = theta, opt_state, states
        self.metrics = metrics


def flat_params(states) -> np.ndarray:
    """Population parameters ``(P, N)`` in ravel_pytree order."""
    return np.asarray(jax.vmap(lambda p: ravel_pytree(p)[0])(states.params))


def make_torch_trainer(torch_reference, setup: JaxSetup, unroll: int, horizon: int, seed: int, device="cpu"):
    """The torch reference on ``device``, started from the same weights, instances and inner states."""
    if setup.shape == "quadratic":
        task = torch_reference.TorchQuadratic(num_dims=QUAD_DIMS, batch_size=BATCH)
    else:
        import torch

        images, labels = mlp_data(setup.shape)
        task = torch_reference.TorchMLP(
            torch.as_tensor(images, device=device), torch.as_tensor(labels, device=device),
            layers=MLP_SIZES[1:-1], batch_size=BATCH,
        )
    net = torch_reference.TorchDM(LSTM_LAYERS, k=5.0, output_scale=0.1, forget_bias=1.0)
    net.load_flax(setup.theta)
    trainer = torch_reference.TorchMetaTrainer(
        task, net, setup.population, unroll_length=unroll, horizon=horizon, seed=seed, device=device
    )
    load_jax_states(trainer, setup.states)
    return trainer


def load_jax_states(trainer, states) -> None:
    inst = {name: np.asarray(value) for name, value in states.inst.items()} if states.inst else None
    trainer.load_state(
        flat_params(states),
        [(np.asarray(h), np.asarray(c)) for h, c in states.opt_state.hidden],
        inst,
        np.asarray(states.step),
    )


def label(shape: str, population: int) -> str:
    name = {"quadratic": "quadratic 10x128", "mlp": "MLP 784-20-10 (random data)",
            "mnist": "MLP 784-20-10 (MNIST)"}[shape]
    return f"{name}, P={population}"


def jax_minibatch_indices(states, unroll: int, shape: str) -> np.ndarray:
    """The minibatch indices l2o's truncated_unroll draws, ``(T, 2, P, B)``.

    Mirrors l2o.meta.unroll: ``key = fold_in(state.key, 0)``, then per step
    ``key_grad, key_loss, key_next = split(key, 3)``; the MLP loss draws
    ``randint(key, (batch,), 0, num_examples)``.
    """
    num_examples = mlp_data(shape)[0].shape[0]

    def member(key):
        def body(key, _):
            key_grad, key_loss, key_next = jax.random.split(key, 3)
            draw = lambda k: jax.random.randint(k, (BATCH,), 0, num_examples)
            return key_next, jnp.stack([draw(key_grad), draw(key_loss)])

        return jax.lax.scan(body, jax.random.fold_in(key, 0), None, length=unroll)[1]

    return np.array(jax.vmap(member)(states.key)).transpose(1, 2, 0, 3).copy()


def max_rel(a, b) -> float:
    """max |a - b| / max |b| (0 when both are 0)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = np.max(np.abs(b))
    return float(np.max(np.abs(a - b)) / scale) if scale > 0 else float(np.max(np.abs(a - b)))


def parse_shapes(names: str, quadratic_population: int, mlp_population: int) -> list[tuple[str, int]]:
    """``(shape, population)`` of each comma-separated name: quadratic, mlp or mnist."""
    out = []
    for shape in (name.strip() for name in names.split(",")):
        if shape not in ("quadratic", *MLP_DATASETS):
            raise SystemExit(f"unknown shape {shape!r}; choose from quadratic, mlp, mnist")
        out.append((shape, quadratic_population if shape == "quadratic" else mlp_population))
    return out
