"""How the architecture contract tests build every entry of ``l2o.optimizers.LEARNED``."""

import jax
import numpy as np

from l2o.meta.unroll import trajectory
from l2o.optimizers import get_learned

# Options for the entries that have no usable defaults; every other entry is built bare.
EXAMPLE_OPTIONS = {
    "Multi": {"groups": [{"name": "kernels", "pattern": "w", "optimizer": "RNNProp"},
                         {"name": "rest", "pattern": ".*", "optimizer": "ScaleBasic"}]},
}
# Architectures whose untrained optimizer may walk uphill, and why.
UNTRAINED_MAY_DIVERGE = {"DM": "the paper's initialization, kept so that its reproductions hold (README)"}


def build(name):
    """The registered architecture ``name``, with :data:`EXAMPLE_OPTIONS` where it needs them."""
    return get_learned(name, **EXAMPLE_OPTIONS.get(name, {}))


def untrained_losses(lopt, task, runs: int = 5, steps: int = 100) -> np.ndarray:
    """Loss curves ``(runs, steps + 1)`` of ``runs`` untrained optimizers ``lopt`` (each its own
    initial theta) on as many instances of ``task``."""

    def run(task, key):
        key_theta, key_inst, key_init, key_run = jax.random.split(key, 4)
        inst = task.sample(key_inst)
        params = task.init(key_init, inst)
        return trajectory(task, lopt.transform(lopt.init(key_theta)), inst, params, key_run, steps)[0]

    return np.asarray(jax.jit(jax.vmap(run, in_axes=(None, 0)))(task, jax.random.split(jax.random.PRNGKey(0), runs)))
