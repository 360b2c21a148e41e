"""The learned-optimizer interface shared by every architecture."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Protocol

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

PyTree = Any


class LearnedOptimizer(Protocol):
    """A family of optimizers indexed by meta-parameters ``theta``.

    ``init(key)`` draws ``theta``; ``transform(theta)`` is the optimizer those meta-parameters
    define, as an optax transformation usable in any optax training loop. Implementations are
    frozen dataclasses whose fields are the architecture's hyperparameters, so that
    ``dataclasses.asdict(lopt)`` is everything needed to rebuild it.
    """

    name: str

    def init(self, key: jax.Array) -> PyTree: ...

    def transform(self, theta: PyTree) -> optax.GradientTransformationExtraArgs: ...


def _jsonable(value: Any) -> Any:
    """Named tuples become dicts, tuples lists, recursively."""
    if hasattr(value, "_asdict"):
        return {key: _jsonable(item) for key, item in value._asdict().items()}
    if isinstance(value, (tuple, list)):
        return [_jsonable(item) for item in value]
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    return value


def hyperparameters(lopt: LearnedOptimizer) -> dict:
    """The keyword arguments that rebuild ``lopt`` (JSON-serializable)."""
    return {field.name: _jsonable(getattr(lopt, field.name)) for field in dataclasses.fields(lopt)}


def num_coordinates(params: PyTree) -> int:
    """The number of scalars in ``params`` (the ``N`` of flat per-coordinate states)."""
    return sum(int(jnp.size(leaf)) for leaf in jax.tree.leaves(params))


def state_dtype(params: PyTree) -> jnp.dtype:
    """The dtype of per-coordinate optimizer state: float32, or float64 for float64 parameters
    (half-precision parameters keep a float32 state)."""
    leaves = jax.tree.leaves(params)
    return jnp.promote_types(jnp.result_type(*leaves) if leaves else jnp.float32, jnp.float32)


def structure_witness(params: PyTree) -> PyTree:
    """A zero-size float32 array ``(0, *shape)`` per leaf of ``params``: their structure and
    shapes, kept in an optimizer state at no memory cost so that ``update`` can check the
    gradients against them, as optax's own optimizers do through their per-leaf state."""
    return jax.tree.map(lambda leaf: jnp.zeros((0, *jnp.shape(leaf)), jnp.float32), params)


def ravel_checked(grads: PyTree, witness: PyTree) -> tuple[jax.Array, Callable[[jax.Array], PyTree]]:
    """``grads`` as one vector ``(N,)`` of :func:`state_dtype`, and the map from an ``(N,)`` update back to the
    structure, shapes and dtypes of ``grads``.

    Raises ``ValueError`` when ``grads`` are not shaped like the parameters the state was
    initialized with (``witness``, from :func:`structure_witness`).
    """
    expected, given = jax.tree.structure(witness), jax.tree.structure(grads)
    shapes = [leaf.shape[1:] for leaf in jax.tree.leaves(witness)]
    if expected != given or shapes != [jnp.shape(leaf) for leaf in jax.tree.leaves(grads)]:
        raise ValueError(
            f"gradients {given} with shapes {[jnp.shape(leaf) for leaf in jax.tree.leaves(grads)]} do not match "
            f"the parameters {expected} with shapes {shapes} that the optimizer state was initialized with; "
            "call init with parameters shaped like the gradients"
        )
    flat, unravel = ravel_pytree(grads)

    def restore(update: jax.Array) -> PyTree:
        return jax.tree.map(lambda u, g: u.astype(g.dtype), unravel(update.astype(flat.dtype)), grads)

    return flat.astype(state_dtype(grads)), restore


def per_coordinate(
    init_state: Callable[[int, jnp.dtype, PyTree], Any],
    step: Callable[[jax.Array, Any, PyTree], tuple[jax.Array, Any]],
) -> optax.GradientTransformationExtraArgs:
    """The optax transformation of an optimizer that works on the flat vector ``(N,)`` of all
    coordinates: the glue every flat-state architecture shares.

    Args:
      init_state: ``(N, dtype, params) -> state``, a NamedTuple with a ``structure`` field
        (filled here with the parameters' :func:`structure_witness`); ``dtype`` is
        :func:`state_dtype`.
      step: ``(gradients (N,), state, gradient pytree) -> (update (N,), state)``; the update is
        added to the parameters, and is returned in the gradients' structure and dtypes.

    ``update`` raises ``ValueError`` for gradients not shaped like the parameters ``init`` saw.
    """

    def init_fn(params):
        state = init_state(num_coordinates(params), state_dtype(params), params)
        return state._replace(structure=structure_witness(params))

    def update_fn(grads, state, params=None, **extra):
        del params, extra
        flat, unravel = ravel_checked(grads, state.structure)
        update, new_state = step(flat, state, grads)
        return unravel(update), new_state._replace(structure=state.structure)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
