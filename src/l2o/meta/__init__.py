"""Meta-training: unrolls, meta-losses, the truncated-BPTT estimator and the trainer."""

from l2o.meta.losses import WEIGHTINGS, meta_loss, step_weights
from l2o.meta.trainer import MetaTrainer, TrainResult, validation_score
from l2o.meta.truncated import make_meta_step, truncated_bptt_loss
from l2o.meta.unroll import InnerState, fresh_state, trajectory, truncated_unroll

__all__ = [
    "InnerState",
    "MetaTrainer",
    "TrainResult",
    "WEIGHTINGS",
    "fresh_state",
    "make_meta_step",
    "meta_loss",
    "step_weights",
    "trajectory",
    "truncated_bptt_loss",
    "truncated_unroll",
    "validation_score",
]
