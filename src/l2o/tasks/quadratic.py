"""Quadratic task families: DeepMind's batched quadratic, the notebook's scaled quadratic, x^2."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from l2o.draws import draw
from l2o.tasks.base import Task, positive_int


def quadratic(num_dims: int = 10, batch_size: int = 128, stddev: float = 0.01) -> Task:
    """DeepMind's quadratic: ``f(x) = mean_b ||W_b x_b - y_b||^2`` (Andrychowicz et al. 2016, 3.1).

    One instance is a batch of ``batch_size`` independent problems, each with
    ``W_b`` of shape ``(num_dims, num_dims)`` and ``y_b`` of shape ``(num_dims,)`` drawn from
    U[0, 1). Parameters ``x`` have shape ``(batch_size, num_dims)``, drawn from N(0, stddev^2).

    Args:
      num_dims: dimension of each problem (10 in the paper).
      batch_size: problems per instance (128 in DeepMind's code).
      stddev: standard deviation of the initial parameters.
    """
    num_dims = positive_int("num_dims", num_dims)
    batch_size = positive_int("batch_size", batch_size)

    def sample(key):
        key_w, key_y = jax.random.split(key)
        w = draw(jax.random.uniform, key_w, (batch_size, num_dims, num_dims))
        y = draw(jax.random.uniform, key_y, (batch_size, num_dims))
        return {"w": w, "y": y}

    def init(key, inst):
        del inst
        return {"x": stddev * draw(jax.random.normal, key, (batch_size, num_dims))}

    def loss(params, inst, key):
        del key
        residual = jnp.einsum("bij,bj->bi", inst["w"], params["x"]) - inst["y"]
        return jnp.mean(jnp.sum(residual**2, axis=-1))

    return Task("quadratic", sample, init, loss)


def scaled_quadratic(num_dims: int = 2) -> Task:
    """The notebook's problem: ``f(x) = sum_i (s_i x_i)^2`` with ``s ~ U[0.5, 1.5)``, ``x0 ~ U[-1, 1)``.

    Parameters ``x`` have shape ``(num_dims,)``; the minimum is 0 at ``x = 0``.
    """
    num_dims = positive_int("num_dims", num_dims)

    def sample(key):
        return {"scale": jax.random.uniform(key, (num_dims,), minval=0.5, maxval=1.5)}

    def init(key, inst):
        del inst
        return {"x": jax.random.uniform(key, (num_dims,), minval=-1.0, maxval=1.0)}

    def loss(params, inst, key):
        del key
        return jnp.sum((inst["scale"] * params["x"]) ** 2)

    return Task("scaled-quadratic", sample, init, loss)


def simple() -> Task:
    """DeepMind's ``simple`` problem: ``f(x) = x^2`` on a scalar starting at 1."""

    def sample(key):
        del key
        return {}

    def init(key, inst):
        del key, inst
        return {"x": jnp.ones(())}

    def loss(params, inst, key):
        del inst, key
        return params["x"] ** 2

    return Task("simple", sample, init, loss)


def simple_multi(num_dims: int = 2) -> Task:
    """DeepMind's ``simple-multi``: ``f(x) = sum_i x_i^2`` over scalars ``x_0 ... x_{n-1}``, all
    starting at 1, each its own parameter (``{"x_0": (), "x_1": (), ...}``) so that different
    optimizers can be assigned to different coordinates."""
    num_dims = positive_int("num_dims", num_dims)

    def sample(key):
        del key
        return {}

    def init(key, inst):
        del key, inst
        return {f"x_{i}": jnp.ones(()) for i in range(num_dims)}

    def loss(params, inst, key):
        del inst, key
        return sum(jnp.square(x) for x in params.values())

    return Task("simple-multi", sample, init, loss)
