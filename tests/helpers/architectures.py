"""How the architecture contract tests build every entry of ``l2o.optimizers.LEARNED``."""

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
