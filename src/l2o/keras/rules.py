"""What ``l2o.keras`` computes, by Keras backend: one step of a trained optimizer over all of a
model's trainable variables at once.

A rule has ``init(params) -> state`` and ``update(grads, params, state) -> (updates, state)``
over the list of the model's trainable variables in Keras's order (the order of the flattened
parameters matters to ScaleBasic and ScaleHierarchical, whose initial state is drawn per
coordinate), a state being a flat list of arrays that Keras keeps as optimizer variables, and
``skipped(params, state)``, the steps skipped for non-finite values. On the JAX
backend the rule *is* ``l2o.load_optax``'s guarded transformation, so every architecture runs
with exactly its JAX numbers; on the torch backend it applies l2o.torch's per-tensor rules (DM,
RNNProp, AdafacMLP) with the same guard. Nothing is implemented a third time.
"""

from __future__ import annotations

import jax
import optax

from l2o.errors import L2OError
from l2o.optimizers.base import LearnedOptimizer
from l2o.optimizers.guard import guarded


class JaxRule:
    """The guarded optax transformation over the list of variables. Zero-size leaves of its state
    (the parameters' structure witness) depend only on the shapes and are not stored."""

    def __init__(self, lopt: LearnedOptimizer, theta):
        if lopt.name == "Multi":
            raise L2OError("l2o.keras does not run Multi optimizers: their groups select parameters by name; "
                           "use one LearnedOptimizer per group's saved optimizer, or optax in JAX")
        self.transform = guarded(lopt.transform(theta))

    def init(self, params: list) -> list:
        return [leaf for leaf in jax.tree.leaves(self.transform.init(params)) if leaf.size]

    def _full(self, params: list, stored: list):
        leaves, treedef = jax.tree.flatten(self.transform.init(params))  # zeros: compiled away
        stored = iter(stored)
        return jax.tree.unflatten(treedef, [next(stored) if leaf.size else leaf for leaf in leaves])

    def update(self, grads: list, params: list, state: list) -> tuple[list, list]:
        updates, new_state = self.transform.update(grads, self._full(params, state), params)
        return updates, [leaf for leaf in jax.tree.leaves(new_state) if leaf.size]

    def skipped(self, params: list, state: list):
        return optax.tree_utils.tree_get(self._full(params, state), "skipped")


def _torch_layout(tensor):
    """A Keras kernel ``(..., in, out)`` (Dense, Conv) in torch's layout ``(out, in, ...)``, which
    l2o.torch's rules read (Adafactor's statistics, orthogonalization, Muon's width scale): a view."""
    n = tensor.dim()
    return tensor if n < 2 else tensor.permute(n - 1, n - 2, *range(n - 2))


def _keras_layout(tensor):
    """The inverse of :func:`_torch_layout`: ``(out, in, ...) -> (..., in, out)``."""
    n = tensor.dim()
    return tensor if n < 2 else tensor.permute(*range(2, n), 1, 0)


class TorchRule:
    """l2o.torch's per-tensor rule for every variable (seen in torch's layout), all applied only if
    every gradient and update is finite (otherwise nothing changes and the last state entry, the
    skip count, grows)."""

    def __init__(self, lopt: LearnedOptimizer, theta):
        from l2o.torch.rules import RULES, theta_to_torch

        if lopt.name not in RULES:
            raise L2OError(f"l2o.keras on the torch backend does not run {lopt.name} optimizers yet; "
                           f"it runs: {', '.join(RULES)} (the JAX backend runs every architecture)")
        self.rule = RULES[lopt.name](lopt, theta_to_torch(theta))

    def init(self, params: list) -> list:
        import torch

        states = [self.rule.init_state(_torch_layout(param)) for param in params]
        self.keys = [list(state) for state in states]  # the order of the flat list
        return [value for state in states for value in state.values()] + [torch.zeros((), dtype=torch.int32)]

    def update(self, grads: list, params: list, state: list) -> tuple[list, list]:
        import torch

        stored, updates, new_state, finite = iter(state[:-1]), [], [], []
        for gradient, param, keys in zip(grads, params, self.keys):
            update, new = self.rule.update(_torch_layout(gradient), _torch_layout(param),
                                           {key: next(stored) for key in keys})
            updates.append(_keras_layout(update))
            new_state += list(new.values())
            finite += [torch.isfinite(gradient).all(), torch.isfinite(update).all()]
        ok = torch.stack(finite).all()
        updates = [torch.where(ok, update, torch.zeros_like(update)) for update in updates]
        new_state = [torch.where(ok, new, old) for new, old in zip(new_state, state[:-1])]
        return updates, new_state + [state[-1] + (~ok).to(torch.int32)]

    def skipped(self, params: list, state: list):
        return state[-1]


def make_rule(backend: str, lopt: LearnedOptimizer, theta):
    """The rule for Keras backend ``backend`` (``"jax"`` or ``"torch"``)."""
    if backend == "jax":
        return JaxRule(lopt, theta)
    if backend == "torch":
        return TorchRule(lopt, theta)
    raise L2OError(f"l2o.keras runs on the jax and torch backends of Keras, not {backend!r}; "
                   "set KERAS_BACKEND=jax (or torch) before importing keras")
