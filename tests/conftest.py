"""Shared test settings: slow reproduction runs are opt-in; compilation is made cheaper.

Most of the suite's time is XLA compiling small programs, in this process and in the
subprocesses that the CLI, resume and sharding tests start (they inherit the environment set
here, before JAX is imported):

* JAX's persistent compilation cache under ``.pytest_cache/`` lets every process reuse what
  another compiled (keyed by the program and the JAX version; a fresh clone starts empty), every
  program however quick to compile (with JAX's default floor of 1 s most of the suite's small
  programs were compiled again in each process; 0 took 2 to 7% off a cold run of the CLI,
  resume and reliability tests against 0.2, measured in interleaved pairs);
* ``--xla_backend_optimization_level=1`` lowers LLVM's optimization level, and
  ``--xla_cpu_use_fusion_emitters=false`` has XLA's CPU backend emit fused loops with its older
  elemental emitters instead of the MLIR fusion emitters (about a third less compile time on the
  suite's second-order meta-gradients). Neither changes an HLO-level transformation, so results
  agree with the defaults up to float rounding; what the tests compare bit for bit (resumed
  against uninterrupted runs) runs under the same flags on both sides, and the committed run of
  l2o 0.1 still resumes to its recorded bytes under them.
"""

import os
from pathlib import Path

import pytest

_CACHE = Path(__file__).resolve().parent.parent / ".pytest_cache" / "jax-compilation"
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(_CACHE))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
for _flag in ("--xla_backend_optimization_level=1", "--xla_cpu_use_fusion_emitters=false"):
    if _flag.split("=")[0] not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_flag}".strip()


def pytest_collection_modifyitems(config, items):
    if os.environ.get("L2O_RUN_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="long reproduction run; set L2O_RUN_SLOW=1 to run it")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
