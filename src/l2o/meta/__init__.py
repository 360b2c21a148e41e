"""Meta-training: unrolls, meta-losses, gradient estimators (truncated BPTT, ES, PES), trainer."""

from l2o.meta.es import ES, PES, ESState
from l2o.meta.estimator import GradientEstimator, make_meta_step
from l2o.meta.estimators import ESTIMATORS, make_estimator
from l2o.meta.losses import WEIGHTINGS, MetaLoss, step_weights
from l2o.meta.trainer import MetaTrainer, TrainResult
from l2o.meta.truncated import TruncatedBPTT, initial_inner_states, truncated_bptt_loss
from l2o.meta.unroll import InnerState, StepTrace, fresh_state, trajectory, truncated_unroll
from l2o.metrics import validation_score

__all__ = [
    "ES",
    "ESTIMATORS",
    "ESState",
    "GradientEstimator",
    "InnerState",
    "MetaLoss",
    "MetaTrainer",
    "PES",
    "StepTrace",
    "TrainResult",
    "TruncatedBPTT",
    "WEIGHTINGS",
    "fresh_state",
    "initial_inner_states",
    "make_estimator",
    "make_meta_step",
    "step_weights",
    "trajectory",
    "truncated_bptt_loss",
    "truncated_unroll",
    "validation_score",
]
