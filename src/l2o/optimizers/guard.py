"""A trained optimizer made safe for whatever a user's model hands it.

:func:`guarded` wraps any optax transformation (``l2o.load_optax`` returns a learned optimizer
wrapped in it) so that:

* leaves that are not floating point (integer or boolean buffers kept among the parameters)
  get zero updates, and the wrapped optimizer never sees them;
* a step whose gradients or updates are not finite everywhere (a NaN or inf gradient; a
  parameter scale whose squared gradient overflows the state's float32) is skipped: zero
  updates, the optimizer state left as it was, and the skip counted in
  :attr:`GuardState.skipped`. The parameters never become NaN through the optimizer.

Zero-size and ``None`` leaves need nothing: every architecture's update leaves them as they are.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

PyTree = Any


class GuardState(NamedTuple):
    """State of :func:`skip_non_finite`.

    Attributes:
      inner_state: the wrapped optimizer's state (as of its last finite step).
      skipped: int32 scalar, the number of steps skipped so far.
    """

    inner_state: PyTree
    skipped: jax.Array


def _all_finite(tree: PyTree) -> jax.Array:
    leaves = [leaf for leaf in jax.tree.leaves(tree) if jnp.issubdtype(jnp.result_type(leaf), jnp.inexact)]
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in leaves])) if leaves else jnp.bool_(True)


def skip_non_finite(tx: optax.GradientTransformation) -> optax.GradientTransformationExtraArgs:
    """``tx``, except that a step whose gradients or updates are not all finite gives zero
    updates and keeps the state of the step before (unlike ``optax.apply_if_finite``, the
    updates ``tx`` produces are checked too, and a skipped step is never applied later)."""
    tx = optax.with_extra_args_support(tx)

    def init_fn(params):
        return GuardState(tx.init(params), jnp.zeros((), jnp.int32))

    def update_fn(grads, state, params=None, **extra):
        updates, inner_state = tx.update(grads, state.inner_state, params, **extra)
        finite = _all_finite(grads) & _all_finite(updates)
        updates = optax.tree.where(finite, updates, optax.tree.zeros_like(updates))
        inner_state = optax.tree.where(finite, inner_state, state.inner_state)
        return updates, GuardState(inner_state, state.skipped + (~finite).astype(jnp.int32))

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _labels(params: PyTree) -> PyTree:
    """``"optimized"`` for every floating-point leaf of ``params``, ``"frozen"`` for the others."""
    return jax.tree.map(
        lambda leaf: "optimized" if jnp.issubdtype(jnp.result_type(leaf), jnp.floating) else "frozen", params)


def _frozen() -> optax.GradientTransformation:
    """Zero updates in the parameters' dtypes (``jax.grad(..., allow_int=True)`` gives integer
    leaves ``float0`` gradients, which ``optax.apply_updates`` cannot add)."""

    def update_fn(updates, state, params=None):
        reference = updates if params is None else params
        return jax.tree.map(jnp.zeros_like, reference), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)


def guarded(tx: optax.GradientTransformation) -> optax.GradientTransformationExtraArgs:
    """``tx`` for any parameter tree: non-floating leaves frozen (zero updates), non-finite
    steps skipped (:func:`skip_non_finite`). On finite gradients of floating-point parameters
    the updates are those of ``tx``. ``optax.tree_utils.tree_get(state, "skipped")`` is the
    number of steps skipped so far."""
    return optax.multi_transform({"optimized": skip_non_finite(tx), "frozen": _frozen()}, _labels)
