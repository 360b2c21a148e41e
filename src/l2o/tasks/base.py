"""The task interface: a family of optimization problems that can be vmapped.

A task is a *family*: ``sample(key)`` draws one problem instance (a pytree of constants),
``init(key, inst)`` draws the optimizee's starting parameters, ``loss(params, inst, key)`` is the
training objective (a minibatch drawn from ``key`` for stochastic tasks), and the optional
``test_metrics(params, inst)`` measures final parameters on held-out data (classifiers' test
split). All are pure functions of their arguments, so a population of instances is simply
``jax.vmap`` over them.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import jax

from l2o.errors import L2OError

PyTree = Any


def positive_int(name: str, value) -> int:
    """``value`` as an int, or an :class:`L2OError` naming the option ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value or value < 1:
        raise L2OError(f"{name} must be a positive integer, got {value!r}; pass e.g. {name}=10")
    return int(value)


@dataclasses.dataclass(frozen=True, eq=False)
class Task:
    """A vmappable family of problems.

    Attributes:
      name: registry name, e.g. ``"quadratic"``.
      sample: ``key -> inst``; one problem instance (pytree of arrays).
      init: ``(key, inst) -> params``; initial optimizee parameters.
      loss: ``(params, inst, key) -> scalar``; training loss.
      test_metrics: ``(params, inst) -> {name: scalar}`` on held-out data, e.g.
        ``test_loss`` and ``test_accuracy``; None for tasks without a held-out split.
      steps_per_epoch: inner steps in one pass over the training split,
        ``ceil(examples / batch_size)``, for minibatch tasks; None for full-batch tasks.
      data: the arrays the functions read (a dataset in device memory), ``()`` for none.
      bind: ``data -> Task``: the same task reading other arrays of the same shapes; None for
        tasks without data.

    A task is a pytree whose leaves are its ``data``. Pass it to jitted functions as an
    argument (``jax.jit(f)(task, ...)``) rather than closing over it: XLA then receives the
    dataset as an input instead of embedding it in the program as a constant, which for
    MNIST costs seconds of compilation per program and a copy of the data.
    """

    name: str
    sample: Callable[[jax.Array], PyTree]
    init: Callable[[jax.Array, PyTree], PyTree]
    loss: Callable[[PyTree, PyTree, jax.Array], jax.Array]
    test_metrics: Callable[[PyTree, PyTree], dict] | None = None
    steps_per_epoch: int | None = None
    data: PyTree = ()
    bind: Callable[[PyTree], "Task"] | None = None

    def with_data(self, data: PyTree) -> "Task":
        """This task over ``data`` (e.g. the traced arrays inside a jitted function)."""
        return self if self.bind is None else self.bind(data)


_FIELDS = ("name", "sample", "init", "loss", "test_metrics", "steps_per_epoch")


def _flatten_task(task: Task):
    # The static part must survive a round trip unchanged (jit compares it): a task with data
    # is rebuilt from it by ``bind`` alone, a task without is its functions themselves.
    if task.bind is not None:
        return (task.data,), (task.bind,)
    return ((),), tuple(getattr(task, name) for name in _FIELDS)


def _unflatten_task(static: tuple, children: tuple) -> Task:
    if len(static) == 1:
        return static[0](children[0])
    return Task(*static)


jax.tree_util.register_pytree_node(Task, _flatten_task, _unflatten_task)


@functools.partial(jax.jit, static_argnums=2)
def draw_problems(task: Task, key: jax.Array, count: int) -> tuple[PyTree, PyTree, jax.Array]:
    """Draws ``count`` instances with their initial parameters and run keys, stacked on axis 0.

    The same ``key`` always gives the same problems, so different optimizers can be compared on
    identical instances. Compiled as one program (drawing op by op would compile each op).

    Returns:
      ``(insts, params, run_keys)``, each with a leading axis of size ``count``.
    """

    def one(key):
        key_inst, key_init, key_run = jax.random.split(key, 3)
        inst = task.sample(key_inst)
        return inst, task.init(key_init, inst), key_run

    return jax.vmap(one)(jax.random.split(key, count))
