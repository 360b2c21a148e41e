"""A trained l2o optimizer as a Keras 3 optimizer."""

from __future__ import annotations

import os
import warnings

import keras
from keras import ops

from l2o.errors import L2OError
from l2o.keras.rules import make_rule
from l2o.saved_optimizer import load_optimizer


@keras.saving.register_keras_serializable(package="l2o")
class LearnedOptimizer(keras.optimizers.Optimizer):
    """A trained l2o optimizer for ``model.compile(optimizer=...)`` and ``model.fit``.

    ``LearnedOptimizer("runs/my-run")`` takes the best optimizer of an ``l2o train`` run (or a
    saved-optimizer directory, as :func:`l2o.load` does). On Keras's JAX backend it applies l2o's
    own optax transformation (``l2o.load_optax``'s, every architecture), on the torch backend
    l2o.torch's rules (DM, RNNProp, AdafacMLP): the numbers ``l2o.load_optax`` gives, in either.

    Args:
      optimizer: a run directory, a saved-optimizer directory, or a shipped optimizer's name
        (:func:`l2o.pretrained.names`).
      learning_rate: a multiplier of the learned update (1.0: as meta-trained), or a Keras
        learning-rate schedule of it.
      **kwargs: Keras's optimizer options (``weight_decay``, ``clipnorm``, ``name``, ...).

    Its state (float32, whatever the variables' dtype) is saved and restored with the model like
    Keras's own optimizers'. As with ``l2o.load_optax``, a step whose gradients or updates are not
    all finite changes no variable and no state; ``skipped_steps`` counts them.
    """

    def __init__(self, optimizer: str | os.PathLike, learning_rate=1.0, name: str = "l2o", **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.optimizer_path = os.fspath(optimizer)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            lopt, theta = load_optimizer(optimizer)
        for warning in caught:  # re-issued from here, so that they point at the user's line
            warnings.warn(warning.message, warning.category, stacklevel=2)
        self._rule = make_rule(keras.backend.backend(), lopt, theta)

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self._state = []
        for i, value in enumerate(self._rule.init(self._values(variables))):
            slot = self.add_variable(tuple(value.shape), dtype=str(value.dtype).split(".")[-1], name=f"l2o_state_{i}")
            slot.assign(value)  # not all zeros: ScaleBasic starts from its learned initial learning rates
            self._state.append(slot)

    @staticmethod
    def _values(variables) -> list:
        return [variable.value for variable in variables]

    @property
    def skipped_steps(self) -> int:
        """Steps skipped because a gradient or an update was not finite."""
        return int(self._rule.skipped(self._values(self._trainable_variables), [v.value for v in self._state]))

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        """One step of the rule over all variables (Keras calls ``update_step`` per variable)."""
        if len(trainable_variables) != len(self._trainable_variables):
            raise L2OError("l2o.keras.LearnedOptimizer needs a gradient for every trainable variable; "
                           "make the variables without one non-trainable (trainable=False)")
        updates, new_state = self._rule.update(list(grads), self._values(trainable_variables),
                                               [slot.value for slot in self._state])
        rate = ops.cast(learning_rate, "float32")
        for update, variable in zip(updates, trainable_variables):
            # exact for learning_rate 1: the update in the variable's dtype, added as optax adds it
            self.assign_add(variable, ops.cast(rate * ops.cast(update, "float32"), variable.dtype))
        for slot, value in zip(self._state, new_state):
            self.assign(slot, value)

    def update_step(self, gradient, variable, learning_rate):
        raise NotImplementedError("l2o.keras.LearnedOptimizer updates all variables together")

    def get_config(self) -> dict:
        return {**super().get_config(), "optimizer": self.optimizer_path}
