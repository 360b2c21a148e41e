"""The PyTorch-eager reference of benchmarks/ computes what l2o computes (runs when torch is
installed): the throughput comparison in docs/BENCHMARKS.md is only fair if it does."""

import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import torch_reference  # noqa: E402
from torch_equivalence import check_shape, failures  # noqa: E402


@pytest.mark.parametrize("shape, population", [("quadratic", 2), ("mlp", 1)])
def test_one_truncation_and_meta_update_agree_with_jax(shape, population):
    """Same meta-loss, losses, parameters and LSTM states after a truncation, meta-gradient and
    clip + Adam update, to 1e-4 relative (float32 arithmetic in different orders)."""
    result = check_shape(shape, population, unroll=5, seed=0, torch=torch, torch_reference=torch_reference)
    assert failures(result, tolerance=1e-4) == []
    assert result["grad_norm"] > 0  # a vanishing meta-gradient would compare nothing
