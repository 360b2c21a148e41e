"""l2o's trained optimizers in Keras 3 (``pip install 'l2o[keras]'``; Keras's JAX or torch backend).

:class:`LearnedOptimizer` is a ``keras.optimizers.Optimizer`` that applies a trained l2o optimizer
with the numbers :func:`l2o.load_optax` gives.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "jax")  # l2o's own; without it Keras would look for TensorFlow

try:
    import keras  # noqa: F401
except ImportError:
    raise ImportError("l2o.keras needs Keras 3: pip install 'l2o[keras]'; set KERAS_BACKEND=jax (or torch)") from None

from l2o.keras.optimizer import LearnedOptimizer  # noqa: E402

__all__ = ["LearnedOptimizer"]
