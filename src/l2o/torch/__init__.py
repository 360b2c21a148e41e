"""l2o's trained optimizers in PyTorch (``pip install 'l2o[torch]'``).

:class:`LearnedOptimizer` is a ``torch.optim.Optimizer`` that runs a trained l2o optimizer
natively in PyTorch, with the same numbers as :func:`l2o.load_optax` in JAX.
"""

try:
    import torch  # noqa: F401
except ImportError:
    raise ImportError("l2o.torch needs PyTorch: pip install 'l2o[torch]'") from None

from l2o.torch.optimizer import LearnedOptimizer  # noqa: E402
from l2o.torch.rules import RULES  # noqa: E402

__all__ = ["LearnedOptimizer", "RULES"]
