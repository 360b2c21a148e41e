#!/usr/bin/env python
"""Equivalence check: the torch reference computes what l2o computes.

On identical LSTM weights, inner states, instances and minibatches, one truncation gives the
same meta-loss, per-step losses, parameters and LSTM states after it, and meta-gradient; then
torch's clip + Adam gives the same new weights as optax's on the same meta-gradient. Figures
are ``max|torch - jax| / max|jax|`` (a float64 comparison of float32 results).

Usage::

    python benchmarks/torch_equivalence.py [--shapes quadratic,mlp] [--tolerance 1e-4] [--device cuda]

``tests/test_torch_equivalence.py`` runs it whenever torch is installed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import NamedTuple

import jax
import numpy as np
import optax
from dm_setups import (
    JaxSetup,
    flat_params,
    import_torch,
    jax_minibatch_indices,
    label,
    load_jax_states,
    make_meta_optimizer,
    make_torch_trainer,
    max_rel,
    parse_shapes,
)
from jax.flatten_util import ravel_pytree


def check_shape(shape: str, population: int, unroll: int, seed: int, torch, torch_reference, device="cpu") -> dict:
    """Compares one truncation and one meta-update of ``shape`` in both implementations, torch's
    on ``device``.

    Returns ``{"checks": {name: Check}, "per_leaf_gradient": {leaf: (rel.err, max|g|)},
    "grad_norm", "shape", "population"}``; see :func:`failures` for what must hold.
    """
    horizon = 10**6  # no restarts inside the checked truncations
    setup = JaxSetup(shape, population, unroll, horizon, seed)
    loss_and_grad = jax.jit(jax.value_and_grad(setup.population_loss, has_aux=True))
    # One JAX truncation first, so the checked one starts from non-zero LSTM states.
    (_, (states, _)), _ = loss_and_grad(setup.theta, setup.states)
    (loss, (after, losses)), grads = loss_and_grad(setup.theta, states)
    grads = jax.device_get(grads)

    trainer = make_torch_trainer(torch_reference, setup, unroll, horizon, seed, device)
    load_jax_states(trainer, states)
    indices = (torch.from_numpy(jax_minibatch_indices(states, unroll, shape)).to(device)
               if shape != "quadratic" else None)
    t_loss, t_losses = trainer.truncation_loss(indices)
    trainer.meta_optimizer.zero_grad(set_to_none=True)
    t_loss.backward()
    t_grads = trainer.net.grads_as_flax()

    flat_j, flat_t = ravel_pytree(grads)[0], ravel_pytree(t_grads)[0]
    checks = {
        "meta_loss": Check(max_rel(float(t_loss.detach()), float(loss)),
                           f"torch {float(t_loss.detach()):.7g}  jax {float(loss):.7g}"),
        "losses (P, T)": Check(max_rel(t_losses.cpu().numpy(), losses)),
        "params after truncation": Check(max_rel(trainer.flat.cpu().numpy(), flat_params(after))),
        "lstm state after truncation": Check(max(
            max_rel(t.cpu().numpy(), j)
            for (th, tc), (jh, jc) in zip(trainer.hidden, after.opt_state.hidden)
            for t, j in ((th, jh), (tc, jc))
        )),
        "meta_gradient (all weights)": Check(max_rel(flat_t, flat_j)),
    }
    # Per leaf, for information: a leaf whose exact gradient is ~0 has only round-off to compare.
    leaves = {
        "/".join(str(getattr(k, "key", k)) for k in path[1:]): (max_rel(t, j), float(np.max(np.abs(j))))
        for (path, j), t in zip(jax.tree_util.tree_flatten_with_path(grads)[0], jax.tree.leaves(t_grads))
    }
    # The meta-optimizer on the same meta-gradient: torch's clip + Adam against optax's.
    meta_optimizer = make_meta_optimizer()
    updates, _ = meta_optimizer.update(grads, meta_optimizer.init(setup.theta), setup.theta)
    trainer.net.set_grads_from_flax(grads)
    norm = trainer.apply_meta_gradient()
    # Compared as new weights (both float32 theta + update), relative to the largest update.
    new_j = ravel_pytree(optax.apply_updates(setup.theta, updates))[0]
    new_t = ravel_pytree(trainer.net.params_as_flax())[0]
    scale = float(np.max(np.abs(ravel_pytree(updates)[0])))
    error = float(np.max(np.abs(np.float64(new_t) - np.float64(new_j)))) / scale
    # Both round theta + update to float32 (torch fuses it into addcdiv_): differences of a few
    # units in the last place of theta are expected, i.e. a floor of ulp(max|theta|) / max|update|.
    floor = float(np.spacing(np.max(np.abs(new_j)))) / scale
    checks["clip + Adam: new weights"] = Check(error, f"err/max|update|; float32 floor ulp(theta)/max|update| = "
                                               f"{floor:.1e}", floor=4 * floor)
    checks["global grad norm"] = Check(max_rel(float(norm), float(optax.global_norm(grads))))
    return {"shape": shape, "population": population, "device": str(device), "checks": checks,
            "per_leaf_gradient": leaves, "grad_norm": float(optax.global_norm(grads))}


class Check(NamedTuple):
    """One compared quantity: its relative error, what else to show, and a float32 rounding
    floor below which a difference is expected (the tolerance is at least that)."""

    error: float
    note: str = ""
    floor: float = 0.0

    def passes(self, tolerance: float) -> bool:
        return self.error <= max(tolerance, self.floor)


def failures(result: dict, tolerance: float) -> list[str]:
    """The names of ``result``'s checks whose error exceeds ``tolerance`` (or their floor)."""
    return [name for name, check in result["checks"].items() if not check.passes(tolerance)]


def print_result(result: dict, tolerance: float) -> None:
    print(f"{label(result['shape'], result['population'])}, torch on {result['device']}:")
    for name, check in result["checks"].items():
        print(f"  {name:<32} rel.err {check.error:.2e}  {check.note}  {'ok' if check.passes(tolerance) else 'FAIL'}")
    print(f"  meta-gradient norm before clipping: {result['grad_norm']:.4g}; per weight, for information\n"
          f"    (rel.err, max|g|; a weight whose exact gradient is ~0 compares only round-off):")
    for name, (err, size) in result["per_leaf_gradient"].items():
        print(f"    {name:<18} {err:.2e}  {size:.3g}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", default="quadratic,mlp", help="comma-separated: quadratic, mlp, mnist")
    parser.add_argument("--quadratic-population", type=int, default=8)
    parser.add_argument("--mlp-population", type=int, default=1)
    parser.add_argument("--unroll", type=int, default=20, help="inner steps of the checked truncation")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tolerance", type=float, default=1e-4, help="largest relative error accepted")
    parser.add_argument("--device", default="cpu", help="torch device of the reference (e.g. cuda)")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON to PATH")
    args = parser.parse_args(argv)
    torch, torch_reference = import_torch()
    if torch is None:
        return 2
    print(f"one truncation of {args.unroll} steps from a state advanced by one earlier truncation; then torch's "
          f"clip + Adam against optax's.\nrel.err = max|torch - jax| / max|jax|; tolerance {args.tolerance:g}.\n")
    results = []
    for shape, population in parse_shapes(args.shapes, args.quadratic_population, args.mlp_population):
        results.append(check_shape(shape, population, args.unroll, args.seed, torch, torch_reference, args.device))
        print_result(results[-1], args.tolerance)
    passed = not any(failures(result, args.tolerance) for result in results)
    print("\nCHECK PASSED" if passed else "\nCHECK FAILED")
    if args.json:
        Path(args.json).write_text(json.dumps({"check": results, "passed": passed}, indent=2, default=str) + "\n")
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
