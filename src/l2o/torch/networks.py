"""The networks of l2o's architectures in PyTorch, applied to many rows at once.

Meta-parameters arrive as flax's nested dicts (``{"Dense_0": {"kernel": (in, out), "bias": (out,)}}``)
converted to torch tensors; every function follows its JAX definition in
:mod:`l2o.optimizers.networks` operation by operation.
"""

from __future__ import annotations

import torch

Layer = dict  # {"kernel": (in, out), "bias": (out,)}


def dense(inputs: torch.Tensor, layer: Layer) -> torch.Tensor:
    """``(N, in) -> (N, out)``: flax's ``nn.Dense``."""
    return inputs @ layer["kernel"] + layer["bias"]


def lstm_layers(inputs: torch.Tensor, state: list[tuple[torch.Tensor, torch.Tensor]], layers: list[Layer],
                forget_bias: float) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
    """:func:`l2o.optimizers.networks.lstm_layers`: ``inputs`` ``(N, F)``, one ``(h, c)`` pair
    ``(N, H)`` per layer -> the last ``h`` and the new state."""
    x, new_state = inputs, []
    for (h, c), layer in zip(state, layers):
        i, f, g, o = torch.chunk(dense(torch.cat([x, h], dim=-1), layer), 4, dim=-1)
        c = torch.sigmoid(f + forget_bias) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        new_state.append((h, c))
        x = h
    return x, new_state
