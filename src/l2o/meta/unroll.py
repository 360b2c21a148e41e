"""Inner optimization runs: one population member's state and its ``lax.scan`` unrolls."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

from l2o.tasks.base import Task

PyTree = Any


class InnerState(NamedTuple):
    """Where one inner optimization run stands.

    Attributes:
      params: optimizee parameters.
      opt_state: the inner optimizer's state.
      inst: the problem instance being optimized.
      step: the run's position, int32 scalar: a run ends when it reaches the horizon, and
        starts at 0 (or, for runs of random length ``L``, at ``horizon - L``).
      key: PRNG key for minibatches and the next reset.
      initial_loss: training loss at the run's initial parameters (for scaled objectives).
      teacher_states: per teacher optimizer, its state as fed with this run's gradients (for
        imitation; an empty tuple without teachers).
    """

    params: PyTree
    opt_state: PyTree
    inst: PyTree
    step: jax.Array
    key: jax.Array
    initial_loss: jax.Array
    teacher_states: tuple = ()


class StepTrace(NamedTuple):
    """What each step of a truncation records; every field has shape ``(unroll_length,)``.

    Attributes:
      loss: training loss at the parameters the step produced (or, with ``loss_before_step``, at
        the parameters it started from, on its gradient's minibatch).
      run_step: the run's position after the step (:attr:`InnerState.step`).
      new_run: whether the run the step belongs to began inside this truncation.
      initial_loss: the initial loss of the run the step belongs to.
      imitation: mean over teachers of the mean squared difference between the learned
        optimizer's update and the teacher's, at the same parameters and gradient (0 without
        teachers).
    """

    loss: jax.Array
    run_step: jax.Array
    new_run: jax.Array
    initial_loss: jax.Array
    imitation: jax.Array


def fresh_state(
    task: Task, tx: optax.GradientTransformation, key: jax.Array, teachers: tuple = (), start: jax.Array | int = 0
) -> InnerState:
    """A new run: a new instance, new initial parameters, new optimizer states, at position
    ``start`` (0 for a run of the whole horizon)."""
    key_inst, key_init, key_run = jax.random.split(key, 3)
    inst = task.sample(key_inst)
    params = task.init(key_init, inst)
    initial_loss = task.loss(params, inst, jax.random.fold_in(key_run, 2))
    teacher_states = tuple(teacher.init(params) for teacher in teachers)
    return InnerState(params, tx.init(params), inst, jnp.asarray(start, jnp.int32), key_run, initial_loss,
                      teacher_states)


def run_start(key: jax.Array, horizon: int, min_length: int | None) -> jax.Array:
    """Where a new run starts, int32 scalar: 0 (a run of ``horizon`` steps), or, with
    ``min_length``, ``horizon - L`` for a length ``L`` log-uniform in ``[min_length, horizon]``."""
    if min_length is None or min_length >= horizon:
        return jnp.zeros((), jnp.int32)
    log_length = jax.random.uniform(key, (), minval=jnp.log(min_length), maxval=jnp.log(horizon + 1))
    return horizon - jnp.clip(jnp.floor(jnp.exp(log_length)).astype(jnp.int32), min_length, horizon)


def _mean_squared_difference(a: PyTree, b: PyTree) -> jax.Array:
    flat_a, flat_b = ravel_pytree(a)[0], ravel_pytree(b)[0]
    return jnp.mean(jnp.square(flat_a - flat_b))


def _select(condition, on_true: PyTree, on_false: PyTree) -> PyTree:
    return jax.tree.map(lambda a, b: jnp.where(condition, a, b), on_true, on_false)


def truncated_unroll(
    task: Task,
    tx: optax.GradientTransformation,
    state: InnerState,
    unroll_length: int,
    horizon: int,
    second_derivatives: bool = False,
    max_multiplier: float = 0.0,
    teachers: tuple = (),
    follow_teachers: bool = False,
    keep_optimizer_state: bool = True,
    min_length: int | None = None,
    loss_before_step: bool = False,
) -> tuple[InnerState, StepTrace]:
    """Runs ``unroll_length`` inner steps, restarting the run whenever it reaches ``horizon``.

    Args:
      task: the task family.
      tx: the inner optimizer (traced meta-parameters may be closed over).
      state: one member's state (vmap over a leading axis for a population).
      unroll_length: number of steps in this truncation (static).
      horizon: length of a whole run; a state with ``step >= horizon`` (or with non-finite
        parameters, after a divergence) is replaced by a fresh run before its next step.
      second_derivatives: if False, the inner gradient is treated as a constant input of the
        optimizer (``stop_gradient``, as DeepMind's default).
      max_multiplier: if positive, a run whose loss exceeds this multiple of its initial loss
        ends there (a new run starts at the next step).
      teachers: optax optimizers whose updates the trace compares with the learned ones; their
        states (in ``state.teacher_states``) see the run's gradients.
      follow_teachers: apply the mean of the teachers' updates instead of the learned ones
        (teacher forcing, for imitation: the trajectory then does not depend on ``tx``).
      keep_optimizer_state: if False, the truncation starts from a fresh state of ``tx`` (the
        parameters carry on); Keras L2O's ``persistent=false``.
      min_length: if set, a new run lasts a random number of steps, log-uniform in
        ``[min_length, horizon]`` (:func:`run_start`), instead of ``horizon``.
      loss_before_step: record each step's loss where its gradient is computed (the parameters
        before the step, on the gradient's minibatch, learned_optimization's convention) instead
        of with one more forward pass at the parameters after it: one forward pass fewer per
        step, and the losses of a run are those at its steps ``0 .. T-1`` instead of ``1 .. T``.
        ``max_multiplier`` then cuts a run one step later.

    Returns:
      ``(state, trace)``: the state after the unroll and the :class:`StepTrace` of its steps.
    """
    start = run_start(jax.random.fold_in(state.key, 3), horizon, min_length)
    restart = fresh_state(task, tx, jax.random.fold_in(state.key, 1), teachers, start)
    state = state._replace(key=jax.random.fold_in(state.key, 0))
    if not keep_optimizer_state:
        state = state._replace(opt_state=tx.init(state.params))

    def step(carry, _):
        state, new_run = carry
        diverged = ~jnp.all(jnp.isfinite(ravel_pytree(state.params)[0]))
        restarting = (state.step >= horizon) | diverged
        state, new_run = _select(restarting, restart, state), new_run | restarting
        key_grad, key_loss, key_next = jax.random.split(state.key, 3)
        loss_before, grads = jax.value_and_grad(task.loss)(state.params, state.inst, key_grad)
        if not second_derivatives:
            grads = jax.lax.stop_gradient(grads)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        teacher_states, teacher_updates, imitation = [], [], jnp.zeros(())
        for teacher, teacher_state in zip(teachers, state.teacher_states):
            teacher_update, teacher_state = teacher.update(grads, teacher_state, state.params)
            teacher_states.append(teacher_state)
            teacher_updates.append(teacher_update)
            imitation += _mean_squared_difference(updates, teacher_update) / len(teachers)
        if follow_teachers:
            updates = jax.tree.map(lambda *u: sum(u) / len(u), *teacher_updates)
        params = optax.apply_updates(state.params, updates)
        loss = loss_before if loss_before_step else task.loss(params, state.inst, key_loss)
        run_step = state.step + 1
        trace = StepTrace(loss, run_step, new_run, state.initial_loss, imitation)
        if max_multiplier > 0:
            run_step = jnp.where(loss > max_multiplier * state.initial_loss, horizon, run_step)
        state = state._replace(params=params, opt_state=opt_state, step=run_step, key=key_next,
                               teacher_states=tuple(teacher_states))
        return (state, new_run), trace

    # Rematerializing each step in the backward pass keeps only the carried state per step;
    # on CPU this is about 1.5x faster than storing every intermediate of the optimizer network.
    (state, _), trace = jax.lax.scan(jax.checkpoint(step), (state, jnp.zeros((), bool)), None, length=unroll_length)
    return state, trace


def trajectory_keys(key: jax.Array, num_steps: int) -> jax.Array:
    """The minibatch keys of a run of ``num_steps`` steps, ``(num_steps + 1, 2)``: one per step,
    and the last for the loss at the final parameters."""
    return jax.random.split(key, num_steps + 1)


def advance(
    task: Task, tx: optax.GradientTransformation, inst: PyTree, params: PyTree, opt_state: PyTree, keys: jax.Array
) -> tuple[tuple[PyTree, PyTree], jax.Array]:
    """``len(keys)`` steps of ``tx`` on one instance, from ``(params, opt_state)``.

    Returns:
      ``((params, opt_state), losses)``: where the run stands after the steps, and the training
      losses ``(len(keys),)``, entry ``t`` the loss at the parameters before step ``t``.
    """

    def step(carry, key_step):
        params, opt_state = carry
        loss, grads = jax.value_and_grad(task.loss)(params, inst, key_step)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    return jax.lax.scan(step, (params, opt_state), keys)


def trajectory(
    task: Task,
    tx: optax.GradientTransformation,
    inst: PyTree,
    params: PyTree,
    key: jax.Array,
    num_steps: int,
) -> tuple[jax.Array, PyTree]:
    """Optimizes one instance for ``num_steps`` steps and records the loss curve.

    Returns:
      ``(losses, params)``: training losses of shape ``(num_steps + 1,)``, entry ``t`` the loss
      at the parameters after ``t`` steps (entry 0 at the initial parameters), and the final
      parameters.
    """
    keys = trajectory_keys(key, num_steps)
    (params, _), losses = advance(task, tx, inst, params, tx.init(params), keys[:-1])
    final = task.loss(params, inst, keys[-1])
    return jnp.concatenate([losses, final[None]]), params
