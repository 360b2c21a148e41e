"""Multi-device meta-training: sharding the population axis leaves the meta-gradient unchanged.

The two-device side runs in a subprocess (tests/helpers/sharding_report.py) with two CPU devices
(``--xla_force_host_platform_device_count``), as XLA reads that flag once, at start-up; the
single-device reference runs in the test process.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
from helpers.sharding_report import trained_theta

SCRIPT = Path(__file__).resolve().parent / "helpers" / "sharding_report.py"


def _run(device_count: int, *flags: str) -> dict:
    xla_flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={device_count}"
    env = {**os.environ, "XLA_FLAGS": xla_flags.strip()}
    done = subprocess.run([sys.executable, str(SCRIPT), *flags], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_sharded_meta_gradients_and_training_equal_single_device_ones():
    """Two devices: the sharded meta-gradients equal the unsharded ones, and a short PES
    training run ends with the theta of the same run on one device."""
    assert jax.device_count() == 1  # this process: the single-device reference
    two = _run(2, "--gradients")
    assert two["device_count"] == 2
    for name in ("TruncatedBPTT", "PES"):
        assert two[name]["devices"] == [2], f"{name}: the population was not spread"
        assert two[name]["relative_error"] < 1e-5, name
    for a, b in zip(trained_theta(), two["trained_theta"]):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6)
