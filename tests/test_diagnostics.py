"""The diagnostics of ``benchmarks/`` measure what they say they measure."""

import json
import os
import sys
from pathlib import Path

import jax.numpy as jnp
import jax.tree_util

import l2o
from l2o.config import TrainConfig
from l2o.meta import MetaTrainer
from l2o.train_settings import apply_overrides

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import validation_instances  # noqa: E402

DATA = Path(os.environ.get("L2O_DATA_DIR", ROOT.parent / "shared" / "data"))
RECIPE = ROOT / "src" / "l2o" / "pretrained" / "recipes" / "muon-fastvelo.json"


def test_validation_instances_reproduces_the_trainers_validation_score_and_splits_all_of_it(capsys):
    overrides = [f"problem/options/data_dir={DATA}", "problem/options/test_examples=100", "run/validation_instances=6"]
    validation_instances.main(["--config", str(RECIPE), "--optimizers", "muon-fastvelo,Adam@1e-2",
                               "--num_steps", "10", *overrides])
    rows = [line.strip("|").split("|") for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    header, datasets, score, ratio = rows[0], rows[1:-2], rows[-2], rows[-1]
    assert [cell.strip() for cell in header[1:]] == ["muon-fastvelo", "Adam@1e-2"]

    trainer = MetaTrainer(TrainConfig.from_dict(apply_overrides(json.loads(RECIPE.read_text()), overrides)))
    _, theta = l2o.load("muon-fastvelo")
    expected = trainer.validation.scores(jax.tree_util.tree_map(jnp.asarray, theta), 10)[0]
    assert abs(float(score[1]) - expected) <= 6e-4  # printed to 3 decimals

    assert float(ratio[1]) == 0.0  # the first optimizer is the reference of the per-instance ratios

    instances = sum(int(row[0].split("(")[1].rstrip(") ")) for row in datasets)
    assert instances == 6
    for column in (1, 2):
        shares = [float(row[column].split("(")[1].rstrip("%) ")) for row in datasets]
        assert abs(sum(shares) - 100) <= len(shares)  # each share rounded to a whole percent


def test_validation_instances_runs_an_optimizer_told_the_runs_length(capsys):
    """``Adam@1e-2~linear`` is Adam whose rate falls linearly from 1e-2 to 0 over the run: its
    score is that of optax's Adam given the schedule, run here on the same instances."""
    import numpy as np
    import optax

    from l2o.meta.validation import final_losses
    from l2o.metrics import validation_score

    overrides = [f"problem/options/data_dir={DATA}", "problem/options/test_examples=100", "run/validation_instances=4"]
    validation_instances.main(["--config", str(RECIPE), "--optimizers", "Adam@1e-2,Adam@1e-2~linear",
                               "--num_steps", "10", *overrides])
    score = [line.strip("|").split("|") for line in capsys.readouterr().out.splitlines() if line.startswith("| ")][-2]
    config = TrainConfig.from_dict(apply_overrides(json.loads(RECIPE.read_text()), overrides))
    validation = MetaTrainer(config).validation
    scheduled = optax.adam(lambda step: 1e-2 * (1 - step / 10))
    losses = np.asarray(final_losses(validation.tasks[0], scheduled, validation.instances[0], 10))
    assert abs(float(score[2]) - validation_score(losses, config.meta_loss.log_objective)) <= 6e-4
    assert abs(float(score[2]) - float(score[1])) > 2e-3  # the schedule changed the runs
