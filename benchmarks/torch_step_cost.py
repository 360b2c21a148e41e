#!/usr/bin/env python
"""Per-step cost in PyTorch of l2o.torch's learned optimizers, relative to torch.optim.Adam.

The model is the MLP of ``optimizer_step_cost.py``, by default 784-1024-256-10 (about 1.07M
parameters, softmax cross-entropy on a minibatch of 128 random MNIST-shaped examples), as
``torch.nn.Linear`` layers, on the GPU when torch sees one (``--device`` to choose). For every
optimizer two calls are timed: the optimizer step alone (``step()`` on fixed gradients) and a
whole training step (forward, backward, step). Candidates: ``torch.optim.Adam`` (its default
multi-tensor ``foreach`` implementation, and ``fused=True``), and ``l2o.torch.LearnedOptimizer``
for every architecture it runs (untrained meta-parameters: the cost does not depend on their
values); ``--compile`` adds each optimizer step wrapped in ``torch.compile``. Repeats of all
candidates are interleaved; medians are reported.

Usage::

    python benchmarks/torch_step_cost.py [--repeats 7] [--steps 10] [--layers 784,1024,256,10]
        [--compile] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import warnings

import jax
import torch
from harness import LoadCapture, cost_rows, environment, interleaved, torch_synchronize

import l2o.torch
from l2o.optimizers import get_learned
from l2o.saved_optimizer import save_optimizer

LAYERS = (784, 1024, 256, 10)


def make_model(widths=LAYERS, device="cpu", seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    layers = []
    for fan_in, fan_out in zip(widths[:-1], widths[1:]):
        layers += [torch.nn.Linear(fan_in, fan_out), torch.nn.ReLU()]
    return torch.nn.Sequential(*layers[:-1]).to(device)


def untrained(name: str, directory: str) -> str:
    """A saved optimizer of architecture ``name`` with its initial meta-parameters (seed 0)."""
    lopt = get_learned(name)
    save_optimizer(directory, lopt, lopt.init(jax.random.PRNGKey(0)))
    return directory


def make_optimizer(name: str, model: torch.nn.Module, saved: dict) -> torch.optim.Optimizer:
    """Adam, fused Adam, or the learned optimizer saved at ``saved[name]``."""
    if name.startswith("Adam"):
        return torch.optim.Adam(model.parameters(), lr=1e-3, fused=name == "Adam fused")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # untrained optimizers warn
        return l2o.torch.LearnedOptimizer(model.parameters(), saved[name])


def repeated(call, steps: int, device: str):
    def run():
        for _ in range(steps):
            call()
        torch_synchronize(device)
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=10, help="steps per timed repeat")
    parser.add_argument("--compile", action="store_true", help="also time each step under torch.compile")
    parser.add_argument("--layers", default=",".join(map(str, LAYERS)), help="MLP widths, input to output")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    widths = tuple(int(width) for width in args.layers.split(","))

    images = torch.rand(128, widths[0], device=args.device)
    labels = torch.randint(0, widths[-1], (128,), device=args.device)
    candidates, names = {}, []
    with tempfile.TemporaryDirectory() as directory:
        saved = {name: untrained(name, f"{directory}/{name}") for name in l2o.torch.RULES}
        for name in ["Adam", "Adam fused", *l2o.torch.RULES]:
            variants = [(name, False)] + ([(f"{name} compiled", True)] if args.compile else [])
            for label, compiled in variants:
                model = make_model(widths, args.device)  # one per candidate: each optimizer moves its own
                optimizer = make_optimizer(name, model, saved)
                loss = torch.nn.functional.cross_entropy(model(images), labels)
                loss.backward()  # fixed gradients for the update-only timing
                step = torch.compile(optimizer.step) if compiled else optimizer.step

                def train_step(model=model, optimizer=optimizer, step=step):
                    optimizer.zero_grad()
                    torch.nn.functional.cross_entropy(model(images), labels).backward()
                    step()

                candidates[label, "update"] = repeated(step, args.steps, args.device)
                candidates[label, "step"] = repeated(train_step, args.steps, args.device)
                names.append(label)

    size = sum(p.numel() for p in make_model(widths).parameters())
    with LoadCapture() as load:
        times = interleaved(candidates, args.repeats, warmup=2)
    medians = {key: statistics.median(values) / args.steps for key, values in times.items()}
    env = environment(torch)
    where = (torch.cuda.get_device_name() if args.device.startswith("cuda") else
             f"CPU ({env['processor']}, {env['cpu_count']} cores, {torch.get_num_threads()} threads)")
    print(f"model: MLP {'-'.join(map(str, widths))}, {size:,} parameters, batch 128; "
          f"torch {torch.__version__} {where}; "
          f"medians of {args.repeats} repeats x {args.steps} steps; {load.describe()}")
    rows = cost_rows(names, medians)
    if args.json:
        with open(args.json, "w") as handle:
            peak = torch.cuda.max_memory_allocated() if args.device.startswith("cuda") else None
            json.dump({"layers": widths, "device": where, "parameters": size, "repeats": args.repeats,
                       "steps": args.steps, "rows": rows, "peak_device_memory_bytes": peak, "environment": env,
                       "load_average_1min": load.as_dict()}, handle, indent=2)


if __name__ == "__main__":
    main()
