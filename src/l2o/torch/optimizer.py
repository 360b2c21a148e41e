"""A trained l2o optimizer as a ``torch.optim.Optimizer``, computed natively in PyTorch."""

from __future__ import annotations

import hashlib
import itertools
import os
from typing import Callable, Iterable

import torch
from flax import serialization

from l2o.errors import L2OError
from l2o.saved_optimizer import load_optimizer
from l2o.torch.rules import RULES, theta_to_torch


class LearnedOptimizer(torch.optim.Optimizer):
    """A trained l2o optimizer for PyTorch models.

    ``LearnedOptimizer(model.parameters(), "runs/my-run")`` takes the best optimizer of an ``l2o
    train`` run (or a directory holding ``optimizer.json`` and ``theta.msgpack``, as
    :func:`l2o.load` does) and applies it to every parameter that has a gradient, one tensor at a
    time, with the same numbers as ``l2o.load_optax`` gives in JAX. Supported architectures: the
    keys of :data:`l2o.torch.rules.RULES` (an unsupported one raises :class:`l2o.L2OError`).

    Args:
      params: an iterable of tensors or of parameter-group dicts, as for any torch optimizer.
      optimizer: a run directory, a saved-optimizer directory, or a shipped optimizer's name
        (:func:`l2o.pretrained.names`).
      lr: a multiplier of the learned update (1.0: the update as meta-trained); a group's ``lr``
        is what ``torch.optim.lr_scheduler`` schedules.

    As ``l2o.load_optax`` does in JAX, a step whose gradients or updates are not all finite is
    skipped: no parameter and no state changes, and :attr:`skipped_steps` counts it. Parameters
    without a gradient are left alone, as torch's own optimizers do.

    State per parameter is float32 (float64 for float64 parameters), on the parameter's device,
    whatever the parameter's dtype (bfloat16 included). Sparse gradients are not supported.
    ``state_dict()`` records which optimizer it belongs to and the skipped steps;
    ``load_state_dict`` refuses a state of another one and keeps the saved state's dtypes (torch's
    default would cast it to the parameters').
    """

    def __init__(self, params: Iterable, optimizer: str | os.PathLike, lr: float = 1.0):
        if not 0.0 <= lr < float("inf"):
            raise L2OError(f"lr must be a finite number >= 0 (a multiplier of the learned update), got {lr}")
        lopt, theta = load_optimizer(optimizer)
        if lopt.name not in RULES:
            raise L2OError(f"l2o.torch does not run {lopt.name} optimizers yet; it runs: {', '.join(RULES)}")
        self._rule = RULES[lopt.name](lopt, theta_to_torch(theta))
        self._fingerprint = f"{lopt.name}:{hashlib.sha256(serialization.to_bytes(theta)).hexdigest()}"
        self.skipped_steps = 0
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None):
        """One update of every parameter with a gradient; ``closure`` re-evaluates the loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        steps = []  # (parameter, its group's lr, update, new state)
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is None:
                    continue
                if param.grad.is_sparse:
                    raise L2OError("l2o.torch.LearnedOptimizer does not support sparse gradients; "
                                   "use dense gradients (e.g. nn.Embedding(sparse=False))")
                state = self.state[param] or self._rule.init_state(param)
                update, new_state = self._rule.update(param.grad, param, state)
                steps.append((param, group["lr"], update.to(param.dtype), new_state))
        finite = [torch.isfinite(tensor).all() for param, _, update, _ in steps for tensor in (param.grad, update)]
        if finite and not torch.stack(finite).all():
            self.skipped_steps += 1
            return loss
        for param, lr, update, new_state in steps:
            self.state[param] = new_state
            param.add_(update, alpha=lr)
        return loss

    def state_dict(self) -> dict:
        """torch's state dict, plus ``"l2o"``: the architecture, a checksum of its meta-parameters
        and the skipped steps."""
        return {**super().state_dict(), "l2o": {"optimizer": self._fingerprint, "skipped_steps": self.skipped_steps}}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restores a state saved by :meth:`state_dict` of an optimizer with the same meta-parameters;
        each state tensor keeps its saved dtype and moves to its parameter's device."""
        saved = state_dict.get("l2o", {}).get("optimizer")
        if saved != self._fingerprint:
            raise L2OError(f"this state was saved by another optimizer ({saved or 'not an l2o.torch one'}), "
                           f"not by this one ({self._fingerprint.split(':')[0]} with these meta-parameters); "
                           "load it into a LearnedOptimizer built from the same run")
        self._check_shapes(state_dict)
        super().load_state_dict({key: value for key, value in state_dict.items() if key != "l2o"})
        saved_ids = itertools.chain.from_iterable(group["params"] for group in state_dict["param_groups"])
        params = itertools.chain.from_iterable(group["params"] for group in self.param_groups)
        for saved_id, param in zip(saved_ids, params):
            for key, value in state_dict["state"].get(saved_id, {}).items():
                self.state[param][key] = value.to(param.device, copy=True)
        self.skipped_steps = state_dict["l2o"]["skipped_steps"]

    def _check_shapes(self, state_dict: dict) -> None:
        """Refuses, before anything changes, a state whose tensors do not have the shapes this
        optimizer's state of the same parameter has (a state saved for other parameters)."""
        saved_ids = itertools.chain.from_iterable(group["params"] for group in state_dict["param_groups"])
        params = itertools.chain.from_iterable(group["params"] for group in self.param_groups)
        for index, (saved_id, param) in enumerate(zip(saved_ids, params)):
            saved = state_dict["state"].get(saved_id)
            if not saved:
                continue
            expected = {key: tuple(value.shape) for key, value in self._rule.init_state(param).items()}
            got = {key: tuple(value.shape) for key, value in saved.items()}
            if got != expected:
                raise L2OError(f"this state does not fit parameter {index} (shape {tuple(param.shape)}): its state "
                               f"has shapes {got}, this optimizer's {expected}; load a state saved for these "
                               "parameters by this version of l2o.torch")
