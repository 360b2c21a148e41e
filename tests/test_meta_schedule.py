"""The meta learning rate's schedule: one rate per epoch, used by the meta-optimizer's steps."""

import json
import math

import jax
import numpy as np
import pytest

from l2o.config import TrainConfig
from l2o.meta import MetaTrainer
from l2o.meta.run_checkpoints import checkpoint_files, load_progress

EPOCHS, RATE, FINAL = 4, 0.01, 0.2


def _config(**settings) -> TrainConfig:
    """One meta-iteration per epoch (a run of 5 steps in one truncation), so each epoch is one Adam step."""
    return TrainConfig(**{"problem": "quadratic", "num_epochs": EPOCHS, "num_steps": 5, "unroll_length": 5,
                          "n_samplings": 2, "evaluation_epochs": 2, "evaluation_period": EPOCHS, "log_period": 1,
                          "learning_rate": RATE, "optimizer_options": {"layers": [4]}, **settings})


def _cosine(epoch: int) -> float:
    """The rate of 1-based ``epoch``, written here from the definition: half a cosine from RATE to FINAL * RATE."""
    return RATE * (FINAL + (1 - FINAL) * 0.5 * (1 + math.cos(math.pi * (epoch - 1) / (EPOCHS - 1))))


def _adam_direction(adam_state, eps: float = 1e-8):
    """Adam's bias-corrected ``m / (sqrt(v) + eps)`` from its state after a step, by hand."""
    t = int(adam_state.count)
    return jax.tree.map(lambda m, v: (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + eps),
                        adam_state.mu, adam_state.nu)


def test_a_cosine_schedule_logs_and_takes_each_epochs_rate(tmp_path):
    config = _config(meta_schedule="cosine", meta_final_fraction=FINAL)
    trainer = MetaTrainer(config, tmp_path)
    trainer.train(progress=False)
    logged = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    rates = [record["meta_learning_rate"] for record in logged if "meta_learning_rate" in record]
    np.testing.assert_allclose(rates, [_cosine(epoch) for epoch in range(1, EPOCHS + 1)], rtol=1e-12)
    assert rates[0] == RATE and rates[-1] == pytest.approx(FINAL * RATE)

    # The last epoch's one step moved theta by its rate times Adam's direction, computed by hand
    # from the moments the checkpoint holds.
    template = trainer.initial_progress()
    last = load_progress(tmp_path, template, config)
    checkpoint_files(tmp_path)[0].unlink()
    before = load_progress(tmp_path, template, config)
    assert (before.epoch, last.epoch) == (EPOCHS - 1, EPOCHS)
    adam = last.meta_opt_state.inner_state[1].inner_state[0]  # after the clip, inside the injected rate
    moved = jax.tree.map(lambda new, old: np.asarray(new) - np.asarray(old), last.theta, before.theta)
    expected = jax.tree.map(lambda d: -_cosine(EPOCHS) * d, _adam_direction(adam))
    # theta (of order 0.1) rounds at about 1e-8; a step at another epoch's rate would be off by over 1e-4
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7), moved, expected)


def test_the_first_epoch_of_a_schedule_is_the_constant_rates_step():
    """At its full rate a scheduled epoch is optax's plain Adam step, to float32 rounding (the rate is an
    input of the compiled step instead of a constant in it): the schedule changes only the rate."""
    constant = MetaTrainer(_config(num_epochs=1)).train(progress=False)
    scheduled = MetaTrainer(_config(num_epochs=1, meta_schedule="cosine")).train(progress=False)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=0, atol=1e-6),
                 scheduled.last_theta, constant.last_theta)  # the step itself is 1e-2 per coordinate
