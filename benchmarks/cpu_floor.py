#!/usr/bin/env python
"""How fast can a JAX meta-step of the DM LSTM on the quadratic be on this CPU?

Times, in one run and on the same meta-parameters, instances and inner states:

* l2o's meta-step (``TruncatedBPTT`` + ``make_meta_step``; what ``meta_train_throughput.py``
  times against PyTorch);
* a minimal hand-written JAX meta-step of the same math (one flat batch of LSTM rows, no
  restarts, no generality), with and without rematerialization of each inner step; its
  meta-loss and meta-gradient are checked against l2o's;
* the LSTM alone: one step forward, forward + backward, and 20 steps forward in a scan;
* what stacking a per-step output of a scan costs (what storing residuals for the reverse pass
  does), with the minor page faults it causes.

It answers whether l2o's generality costs speed, and what the floor of a straightforward JAX
implementation is on the machine. Shape: DeepMind's quadratic (10 dims x batch 128 per
instance), population 8 (10,240 LSTM rows), LSTM (20, 20), unroll 20, first order.

Usage::

    python benchmarks/cpu_floor.py [--repeats 7] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import resource

import jax
import jax.numpy as jnp
import optax
from harness import median_seconds

from l2o.meta import TruncatedBPTT, make_meta_step
from l2o.optimizers import DM
from l2o.tasks import quadratic

POPULATION, UNROLL, HORIZON, K, OUTPUT_SCALE = 8, 20, 100, 5.0, 0.1


def lstm(theta, gradients, hidden):
    """DM's LSTM with LogAndSign on flat gradients ``(R,)``: ``(update (R,), hidden)``."""
    params = theta["params"]
    tiny = jnp.finfo(gradients.dtype).tiny
    x = jnp.stack([jnp.maximum(jnp.log(jnp.abs(gradients) + tiny) / K, -1.0),
                   jnp.clip(gradients * jnp.exp(K), -1.0, 1.0)], axis=-1)
    new_hidden = []
    for layer, (h, c) in enumerate(hidden):
        dense = params[f"Dense_{layer}"]
        gates = jnp.concatenate([x, h], axis=-1) @ dense["kernel"] + dense["bias"]
        i, f, g, o = jnp.split(gates, 4, axis=-1)
        c = jax.nn.sigmoid(f + 1.0) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        new_hidden.append((h, c))
        x = h
    readout = params[f"Dense_{len(hidden)}"]
    return OUTPUT_SCALE * (x @ readout["kernel"] + readout["bias"])[:, 0], tuple(new_hidden)


def minimal_meta_loss(theta, x, hidden, w, y, remat: bool):
    """Sum over the truncation of the population-mean post-update loss; ``x (P, B, D)``."""

    def losses(x):  # (P,)
        residual = jnp.einsum("pbij,pbj->pbi", w, x) - y
        return jnp.mean(jnp.sum(residual**2, axis=-1), axis=-1)

    def step(carry, _):
        x, hidden = carry
        gradients = jax.lax.stop_gradient(jax.grad(lambda x: jnp.sum(losses(x)))(x))
        update, hidden = lstm(theta, gradients.reshape(-1), hidden)
        x = x + update.reshape(x.shape)
        return (x, hidden), jnp.mean(losses(x))

    body = jax.checkpoint(step) if remat else step
    (x, hidden), step_losses = jax.lax.scan(body, (x, hidden), None, length=UNROLL)
    return jnp.sum(step_losses), (x, hidden)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()

    task, lopt = quadratic(), DM(layers=(20, 20), preprocess="log_sign", output_scale=OUTPUT_SCALE)
    theta = lopt.init(jax.random.PRNGKey(0))
    estimator = TruncatedBPTT(task, lopt, unroll_length=UNROLL, horizon=HORIZON)
    states = estimator.init_states(theta, jax.random.PRNGKey(1), POPULATION)
    meta_optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-3))
    meta_opt_state = meta_optimizer.init(theta)
    key = jax.random.PRNGKey(2)
    l2o_step = make_meta_step(estimator, meta_optimizer)

    # The same starting point for the minimal step: flat LSTM rows of all members, in
    # ravel_pytree order (the quadratic has one parameter, x (B, D)).
    x0, w, y = states.params["x"], states.inst["w"], states.inst["y"]
    hidden0 = tuple((h.reshape(-1, h.shape[-1]), c.reshape(-1, c.shape[-1])) for h, c in states.opt_state.hidden)

    def minimal_step_fn(remat):
        @jax.jit
        def step(theta, meta_opt_state, x, hidden):
            (loss, (x, hidden)), grads = jax.value_and_grad(minimal_meta_loss, has_aux=True)(
                theta, x, hidden, w, y, remat)
            updates, meta_opt_state = meta_optimizer.update(grads, meta_opt_state, theta)
            return optax.apply_updates(theta, updates), meta_opt_state, x, hidden, loss, grads

        return step

    # Same math: meta-loss and meta-gradient of the first truncation agree with l2o's.
    grads, _, metrics = jax.jit(estimator.grad)(theta, states, key)
    *_, minimal_loss, minimal_grads = minimal_step_fn(True)(theta, meta_opt_state, x0, hidden0)
    loss_error = abs(float(minimal_loss) - float(metrics["meta_loss"])) / abs(float(metrics["meta_loss"]))
    grad_error = max(float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(a)))
                     for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(minimal_grads)))

    rows = {}
    rows["l2o meta-step"] = median_seconds(
        lambda: jax.block_until_ready(l2o_step(theta, meta_opt_state, states, key)), args.repeats)
    for remat in (True, False):
        step = minimal_step_fn(remat)
        rows[f"minimal JAX meta-step, remat={remat}"] = median_seconds(
            lambda step=step: jax.block_until_ready(step(theta, meta_opt_state, x0, hidden0)), args.repeats)

    gradients = jax.random.normal(jax.random.PRNGKey(3), (hidden0[0][0].shape[0],)) * 1e-2
    forward = jax.jit(lstm)
    objective = lambda theta, g, hidden: jnp.sum(lstm(theta, g, hidden)[0] ** 2)
    backward = jax.jit(jax.grad(objective))

    @jax.jit
    def forward_scan(theta, g, hidden):
        return jax.lax.scan(lambda h, _: (lstm(theta, g, h)[1], None), hidden, None, length=UNROLL)[0]

    def scan_of_tanh(with_outputs: bool):
        """20 steps of ``tanh`` on a (rows, 80) carry, optionally also stacked as per-step outputs."""

        @jax.jit
        def run(carry):
            step = lambda c, _: (jnp.tanh(c), jnp.tanh(c) if with_outputs else None)
            return jax.lax.scan(step, carry, None, length=UNROLL)

        return run

    gates = jax.random.normal(jax.random.PRNGKey(4), (hidden0[0][0].shape[0], 80))
    plain, stacked = scan_of_tanh(False), scan_of_tanh(True)
    faults_before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    stacked_seconds = median_seconds(lambda: jax.block_until_ready(stacked(gates)), args.repeats)
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults_before) / (args.repeats + 1)
    plain_seconds = median_seconds(lambda: jax.block_until_ready(plain(gates)), args.repeats)

    blocks = {
        "LSTM forward, one step": median_seconds(
            lambda: jax.block_until_ready(forward(theta, gradients, hidden0)), 5 * args.repeats),
        "LSTM forward + backward, one step": median_seconds(
            lambda: jax.block_until_ready(backward(theta, gradients, hidden0)), 5 * args.repeats),
        f"LSTM forward, {UNROLL} steps in a scan (per step)": median_seconds(
            lambda: jax.block_until_ready(forward_scan(theta, gradients, hidden0)), args.repeats) / UNROLL,
        f"scan output of {gates.nbytes / 1e6:.1f} MB per step: extra cost per step": (
            stacked_seconds - plain_seconds) / UNROLL,
    }

    inner_steps = POPULATION * UNROLL
    print(f"quadratic 10x128, population {POPULATION} ({hidden0[0][0].shape[0]} LSTM rows), unroll {UNROLL}, "
          f"first order; JAX {jax.__version__} on {jax.default_backend()}, median of {args.repeats}")
    print(f"minimal vs l2o: meta-loss relative difference {loss_error:.1e}, meta-gradient {grad_error:.1e}")
    print(f"{'meta-step':<40} {'ms':>8} {'inner steps/s':>14} {'ms per inner step':>18}")
    for name, seconds in rows.items():
        print(f"{name:<40} {1000 * seconds:>8.1f} {inner_steps / seconds:>14.0f} {1000 * seconds / UNROLL:>18.2f}")
    print(f"{'building block':<52} {'ms':>8}")
    for name, seconds in blocks.items():
        print(f"{name:<52} {1000 * seconds:>8.2f}")
    print(f"minor page faults per call of the scan with stacked outputs: {faults:.0f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta_step_seconds": rows, "block_seconds": blocks, "stacked_output_page_faults": faults,
                       "loss_error": loss_error,
                       "grad_error": grad_error, "jax": jax.__version__}, f, indent=2)
    return 0 if loss_error < 1e-4 and grad_error < 1e-3 else 1


if __name__ == "__main__":
    raise SystemExit(main())
