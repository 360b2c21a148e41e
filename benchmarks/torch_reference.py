"""A plain PyTorch-eager reference of l2o's DM meta-training, for benchmarks only.

This mirrors, operation for operation, what ``l2o.meta.truncated.truncated_bptt_loss`` +
``make_meta_step`` compute with ``l2o.optimizers.DM(preprocess="log_sign")``:

* DeepMind's coordinatewise deep LSTM (Andrychowicz et al. 2016): LogAndSign features
  ``[max(log(|g| + tiny) / k, -1), clip(g e^k, -1, 1)]``; per layer one linear map on
  ``[x, h]`` to ``4H`` gates split ``i, f, g, o``; ``c = sigmoid(f + 1) c + sigmoid(i) tanh(g)``,
  ``h = sigmoid(o) tanh(c)``; a linear read-out to one number, times ``output_scale``, added to
  the parameters. All coordinates of all members are one flat batch of rows.
* Truncated BPTT without second derivatives: the inner gradient is computed on a detached copy
  of the parameters; the meta-loss is the sum over the truncation of the loss *after* each
  update (fresh minibatch for stochastic tasks), averaged over the population.
* Meta-optimizer: global-norm clipping (optax's rule: scale by ``max_norm / norm`` when
  ``norm > max_norm``) followed by Adam.
* The population is an extra leading dimension ``P`` of every tensor (vectorized, no Python
  loop over members). The inner state (parameters, LSTM state) carries over to the next
  truncation detached; a member whose run reached ``horizon`` steps (or whose parameters are
  not finite) restarts with a fresh instance at the start of the next truncation -- l2o checks
  this before every step, which is the same thing when ``horizon`` is a multiple of the unroll
  length and no run diverges mid-truncation.

Parameter layout: each member's parameters are kept as one flat row of ``(P, N)`` in the order
of ``jax.flatten_util.ravel_pytree`` of the l2o task's parameter pytree (dict keys sorted, so
``b`` before ``w`` in an MLP layer), so LSTM states can be copied between the implementations.

Device: every tensor lives on the device of the trainer's random generator (``device=`` of
:class:`TorchMetaTrainer`, e.g. ``"cuda"``), the LSTM's weights included; arrays copied in or out
(``load_state``, ``*_as_flax``) pass through host memory.

This module imports only torch, numpy and the standard library; the ``l2o`` package itself
never imports torch.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

# --------------------------------------------------------------------------------------------
# The learned optimizer


class TorchDM(torch.nn.Module):
    """The coordinatewise deep LSTM with LogAndSign preprocessing.

    ``forward(grads, state)`` takes gradients of shape ``(R,)`` (one row per coordinate) and a
    state ``[(h, c), ...]`` with ``h, c`` of shape ``(R, H)``, and returns the update ``(R,)``
    (already multiplied by ``output_scale``) and the new state.
    """

    def __init__(
        self,
        layers: Sequence[int] = (20, 20),
        k: float = 5.0,
        output_scale: float = 0.1,
        forget_bias: float = 1.0,
    ):
        super().__init__()
        self.layers = tuple(int(size) for size in layers)
        self.k = float(k)
        self.exp_k = math.exp(self.k)
        self.output_scale = float(output_scale)
        self.forget_bias = float(forget_bias)
        num_features = 2
        cells, in_size = [], num_features
        for size in self.layers:
            cells.append(torch.nn.Linear(in_size + size, 4 * size))
            in_size = size
        self.cells = torch.nn.ModuleList(cells)
        self.readout = torch.nn.Linear(in_size, 1)

    def features(self, grads: torch.Tensor) -> torch.Tensor:
        tiny = torch.finfo(grads.dtype).tiny
        log_magnitude = torch.clamp(torch.log(grads.abs() + tiny) / self.k, min=-1.0)
        sign = torch.clamp(grads * self.exp_k, -1.0, 1.0)
        return torch.stack([log_magnitude, sign], dim=-1)

    def zero_state(self, rows: int, dtype=torch.float32, device="cpu") -> list:
        zeros = lambda size: torch.zeros(rows, size, dtype=dtype, device=device)
        return [(zeros(size), zeros(size)) for size in self.layers]

    def forward(self, grads: torch.Tensor, state: list) -> tuple[torch.Tensor, list]:
        x = self.features(grads)
        new_state = []
        for cell, (h, c) in zip(self.cells, state):
            gates = cell(torch.cat([x, h], dim=-1))
            i, f, g, o = gates.chunk(4, dim=-1)
            c = torch.sigmoid(f + self.forget_bias) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            new_state.append((h, c))
            x = h
        return self.output_scale * self.readout(x).squeeze(-1), new_state

    @torch.no_grad()
    def load_flax(self, theta) -> None:
        """Copies flax variables ``{'params': {'Dense_i': {'kernel' (in, out), 'bias'}}}``.

        flax kernels are ``(in, out)``; torch ``Linear`` weights are ``(out, in)``.
        """
        params = theta["params"] if "params" in theta else theta
        modules = [*self.cells, self.readout]
        for index, module in enumerate(modules):
            dense = params[f"Dense_{index}"]
            module.weight.copy_(torch.from_numpy(np.array(dense["kernel"])).T)
            module.bias.copy_(torch.from_numpy(np.array(dense["bias"])))

    def set_grads_from_flax(self, grads) -> None:
        """Sets every parameter's ``.grad`` from a flax-layout gradient pytree."""
        params = grads["params"] if "params" in grads else grads
        for index, module in enumerate([*self.cells, self.readout]):
            dense = params[f"Dense_{index}"]
            device = module.weight.device
            module.weight.grad = torch.from_numpy(np.array(dense["kernel"])).T.contiguous().to(device)
            module.bias.grad = torch.from_numpy(np.array(dense["bias"])).to(device)

    def grads_as_flax(self) -> dict:
        """The ``.grad`` of every parameter in flax's layout (numpy arrays)."""
        modules = [*self.cells, self.readout]
        return {
            "params": {
                f"Dense_{index}": {
                    "kernel": module.weight.grad.detach().T.cpu().numpy().copy(),
                    "bias": module.bias.grad.detach().cpu().numpy().copy(),
                }
                for index, module in enumerate(modules)
            }
        }

    def params_as_flax(self) -> dict:
        modules = [*self.cells, self.readout]
        return {
            "params": {
                f"Dense_{index}": {
                    "kernel": module.weight.detach().T.cpu().numpy().copy(),
                    "bias": module.bias.detach().cpu().numpy().copy(),
                }
                for index, module in enumerate(modules)
            }
        }


# --------------------------------------------------------------------------------------------
# Tasks, batched over a leading population dimension


class TorchQuadratic:
    """DeepMind's quadratic ``mean_b ||W_b x_b - y_b||^2`` for ``P`` instances at once."""

    stochastic = False

    def __init__(self, num_dims: int = 10, batch_size: int = 128, stddev: float = 0.01):
        self.num_dims, self.batch_size, self.stddev = num_dims, batch_size, stddev
        self.num_coordinates = num_dims * batch_size

    def sample(self, count: int, generator: torch.Generator) -> dict:
        b, d, device = self.batch_size, self.num_dims, generator.device
        return {
            "w": torch.rand(count, b, d, d, generator=generator, device=device),
            "y": torch.rand(count, b, d, generator=generator, device=device),
        }

    def init(self, count: int, generator: torch.Generator) -> torch.Tensor:
        return self.stddev * torch.randn(count, self.num_coordinates, generator=generator, device=generator.device)

    def loss(self, flat: torch.Tensor, inst: dict, indices=None) -> torch.Tensor:
        """Per-member losses ``(P,)`` at flat parameters ``(P, N)``."""
        del indices
        x = flat.view(flat.shape[0], self.batch_size, self.num_dims, 1)
        residual = torch.matmul(inst["w"], x).squeeze(-1) - inst["y"]
        return residual.square().sum(-1).mean(-1)


class TorchMLP:
    """A fully connected classifier on minibatches drawn with replacement, ``P`` at once.

    ``images (M, D)`` and ``labels (M,)`` are shared by all members (as in l2o, where the data
    set is a constant of the task and an instance is empty); they must be on the device of the
    generators passed to ``init`` and ``draw_indices``.
    """

    stochastic = True

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        layers: Sequence[int] = (20,),
        batch_size: int = 128,
        init_stddev: float = 0.01,
        num_classes: int = 10,
    ):
        self.images, self.labels = images, labels.long()
        self.batch_size, self.init_stddev = batch_size, init_stddev
        self.sizes = (images.shape[1], *map(int, layers), num_classes)
        # ravel_pytree order of [{"b", "w"}, ...]: per layer, the bias then the kernel.
        self.layout = []
        offset = 0
        for n_in, n_out in zip(self.sizes[:-1], self.sizes[1:]):
            self.layout.append((offset, (n_out,), offset + n_out, (n_in, n_out)))
            offset += n_out + n_in * n_out
        self.num_coordinates = offset

    def sample(self, count: int, generator: torch.Generator):
        del count, generator
        return None

    def init(self, count: int, generator: torch.Generator) -> torch.Tensor:
        flat = torch.zeros(count, self.num_coordinates, device=generator.device)
        for _, _, w_at, (n_in, n_out) in self.layout:
            flat[:, w_at : w_at + n_in * n_out] = self.init_stddev * torch.randn(
                count, n_in * n_out, generator=generator, device=generator.device
            )
        return flat

    def draw_indices(self, count: int, generator: torch.Generator) -> torch.Tensor:
        shape = (count, self.batch_size)
        return torch.randint(0, self.images.shape[0], shape, generator=generator, device=generator.device)

    def loss(self, flat: torch.Tensor, inst, indices: torch.Tensor) -> torch.Tensor:
        """Per-member mean cross-entropy ``(P,)`` on minibatches ``indices (P, B)``."""
        del inst
        count = flat.shape[0]
        x = self.images[indices]  # (P, B, D)
        last = len(self.layout) - 1
        for index, (b_at, (n_out,), w_at, (n_in, _)) in enumerate(self.layout):
            b = flat[:, b_at : b_at + n_out].unsqueeze(1)
            w = flat[:, w_at : w_at + n_in * n_out].view(count, n_in, n_out)
            x = torch.baddbmm(b, x, w)
            if index < last:
                x = torch.sigmoid(x)
        per_example = F.cross_entropy(
            x.reshape(-1, x.shape[-1]), self.labels[indices].reshape(-1), reduction="none"
        )
        return per_example.view(count, -1).mean(-1)


# --------------------------------------------------------------------------------------------
# Truncated-BPTT meta-training


class TorchMetaTrainer:
    """Population state, one truncation's meta-loss and one meta-step, all in eager torch.

    Attributes:
      flat: inner parameters ``(P, N)`` (detached between truncations).
      hidden: LSTM state, ``[(h, c), ...]`` each ``(P, N, H)``.
      inst: the population's instances (``None`` for the MLP).
      step: inner steps taken on each member's current run, ``(P,)`` int64.
    """

    def __init__(
        self,
        task,
        net: TorchDM,
        population: int,
        unroll_length: int = 20,
        horizon: int = 100,
        learning_rate: float = 1e-3,
        clip_norm: float = 1.0,
        seed: int = 0,
        device: str = "cpu",
    ):
        self.task, self.net = task, net.to(device)
        self.population, self.unroll_length, self.horizon = population, unroll_length, horizon
        self.clip_norm = clip_norm
        self.device = torch.device(device)
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.meta_optimizer = torch.optim.Adam(net.parameters(), lr=learning_rate)
        n = task.num_coordinates
        self.flat = task.init(population, self.generator)
        self.inst = task.sample(population, self.generator)
        self.hidden = [(h.view(population, n, -1), c.view(population, n, -1))
                       for h, c in net.zero_state(population * n, device=self.device)]
        self.step = torch.zeros(population, dtype=torch.int64, device=self.device)

    # -- state management ---------------------------------------------------------------------

    def load_state(self, flat, hidden, inst=None, step=None) -> None:
        """Sets the population's state from arrays (numpy or torch), e.g. copied from l2o."""
        as_t = lambda a, dtype=np.float32: torch.from_numpy(np.array(a, dtype=dtype)).to(self.device)
        self.flat = as_t(flat)
        self.hidden = [(as_t(h), as_t(c)) for h, c in hidden]
        if inst is not None:
            self.inst = {name: as_t(value) for name, value in inst.items()}
        if step is not None:
            self.step = as_t(step, np.int64)

    def _restart_finished(self) -> None:
        done = (self.step >= self.horizon) | ~torch.isfinite(self.flat).all(dim=1)
        if not bool(done.any()):
            return
        count = int(done.sum())
        self.flat[done] = self.task.init(count, self.generator)
        fresh = self.task.sample(count, self.generator)
        if fresh is not None:
            for name, value in fresh.items():
                self.inst[name][done] = value
        for h, c in self.hidden:
            h[done] = 0.0
            c[done] = 0.0
        self.step[done] = 0

    # -- one truncation -----------------------------------------------------------------------

    def truncation_loss(self, indices: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Runs one truncation from the current state; returns ``(meta_loss, losses (P, T))``.

        ``meta_loss`` is differentiable with respect to the LSTM's parameters; the population's
        state is advanced (detached). ``indices`` optionally fixes the minibatches of a
        stochastic task: ``(T, 2, P, B)``, entry ``[t, 0]`` for the gradient of step ``t`` and
        ``[t, 1]`` for the loss after it (otherwise drawn from the trainer's generator).
        """
        self._restart_finished()
        P, n = self.population, self.task.num_coordinates
        rows = P * n
        flat = self.flat
        state = [(h.reshape(rows, -1), c.reshape(rows, -1)) for h, c in self.hidden]
        losses = []
        for t in range(self.unroll_length):
            if self.task.stochastic:
                if indices is not None:
                    idx_grad, idx_loss = indices[t, 0], indices[t, 1]
                else:
                    idx_grad = self.task.draw_indices(P, self.generator)
                    idx_loss = self.task.draw_indices(P, self.generator)
            else:
                idx_grad = idx_loss = None
            # Inner gradient on a detached copy: no second derivatives.
            detached = flat.detach().requires_grad_(True)
            (grads,) = torch.autograd.grad(self.task.loss(detached, self.inst, idx_grad).sum(), detached)
            update, state = self.net(grads.reshape(rows), state)
            flat = flat + update.view(P, n)
            losses.append(self.task.loss(flat, self.inst, idx_loss))
        losses = torch.stack(losses, dim=1)  # (P, T)
        self.flat = flat.detach()
        self.hidden = [(h.detach().view(P, n, -1), c.detach().view(P, n, -1)) for h, c in state]
        self.step = self.step + self.unroll_length
        return losses.sum(dim=1).mean(), losses.detach()

    def meta_step(self, indices: torch.Tensor | None = None) -> dict:
        """One meta-iteration: truncation, meta-gradient, clipping, Adam. Returns metrics."""
        loss, losses = self.truncation_loss(indices)
        self.meta_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = self.apply_meta_gradient()
        return {"meta_loss": loss.detach(), "inner_loss": losses[:, -1].mean(), "grad_norm": norm}

    def apply_meta_gradient(self) -> torch.Tensor:
        """Clips the parameters' ``.grad`` by global norm and takes an Adam step.

        Returns the global norm before clipping. Clipping follows optax.clip_by_global_norm:
        ``g * max_norm / norm`` when ``norm > max_norm`` (torch's clip_grad_norm_ would divide
        by ``norm + 1e-6``).
        """
        grads = [p.grad for p in self.net.parameters()]
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
        scale = torch.where(norm < self.clip_norm, torch.ones_like(norm), self.clip_norm / norm)
        torch._foreach_mul_(grads, scale)
        self.meta_optimizer.step()
        return norm.detach()
