"""The sections of the meta-training configuration (:class:`l2o.config.TrainConfig`): one typed,
frozen model per object that consumes it. Each field's ``description`` is its help text."""

from __future__ import annotations

import itertools
import math
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator
from typing_extensions import TypedDict

from l2o.errors import L2OError
from l2o.meta.estimators import ESTIMATORS, describe_estimators
from l2o.meta.losses import WEIGHTINGS
from l2o.meta.strategies import STRATEGIES, describe_strategies
from l2o.optimizers import LEARNED
from l2o.tasks import TASKS
from l2o.tasks.augmentation import LEVELS

# Problem families a grid may expand to: each is a compiled program and a population of its own.
MAX_GRID_PROBLEMS = 16

Positive = Annotated[int, Field(ge=1)]
Probability = Annotated[float, Field(ge=0, le=1)]


class Growth(TypedDict):
    """A geometric curriculum: stage ``i`` has horizon ``base * power ** i``."""

    base: Positive
    power: Annotated[float, Field(gt=0)]


class Problem(TypedDict):
    """One more problem family to meta-train on: an ``l2o.tasks.TASKS`` name and its options."""

    name: str
    options: dict


class Teacher(TypedDict):
    """A hand-designed optimizer to imitate: an ``l2o.optimizers.BASELINES`` name and its options."""

    name: str
    options: dict


class Section(BaseModel):
    """A section of the configuration: frozen, strictly typed, unknown keys refused."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False)


def _known(name: str, registry: dict, what: str) -> str:
    if name not in registry:
        raise L2OError(f"unknown {what} {name!r}; choose one of: {', '.join(registry)}")
    return name


class AugmentationConfig(Section):
    """VeLO's reparameterization augmentation (:func:`l2o.tasks.reparameterized`)."""

    scale_range: Annotated[list[Annotated[float, Field(gt=0)]], Field(min_length=2, max_length=2)] = Field(
        [1e-3, 1e3], description="the scales are log-uniform in [low, high]")
    levels: Annotated[list[Literal[tuple(LEVELS)]], Field(min_length=1)] = Field(
        list(LEVELS), description=f"levels drawn from, uniformly, per instance: {', '.join(LEVELS)}")

    @model_validator(mode="after")
    def _ordered(self):
        if self.scale_range[0] > self.scale_range[1]:
            raise L2OError(f"augmentation scale_range {self.scale_range} must be [low, high] with low <= high")
        return self


class ProblemConfig(Section):
    """The problem families meta-trained on; evaluation uses the first."""

    name: str = Field("quadratic", description=f"problem to train on: {', '.join(TASKS)}")
    options: dict = Field({}, description="the problem's keyword arguments")
    grid: dict[str, Annotated[list, Field(min_length=1)]] = Field(
        {}, description="option values to cross with options, e.g. {\"layers\": [[32], [64, 64]], "
        "\"batch_size\": [32, 128]}: one problem family per combination (one compiled program each), "
        f"trained on in turn each epoch; at most {MAX_GRID_PROBLEMS} combinations")
    extra: list[Problem] = Field([], description="more problem families, trained on in turn each epoch "
                                 "(each with its own population); validation scores the mean over all")
    random_scaling: Annotated[float, Field(ge=0)] = Field(
        0.0, description="meta-train on f(c*x), log c ~ U[-R, R] per coordinate (RNNProp's random scaling; "
        "0: off); validation stays unscaled")
    augmentation: Union[AugmentationConfig, None] = Field(
        None, description="if set, meta-train on reparameterized tasks (VeLO's augmentation: the same "
        "function, parameters scaled globally, per tensor or per scalar); validation stays unaugmented")
    validation: list[Problem] = Field([], description="problem families validated on instead of the trained "
                                      "ones, e.g. held-out families, so that the best optimizer and choices "
                                      "made on validation reflect transfer; validation scores the mean over "
                                      "them (empty: the trained families)")

    @model_validator(mode="after")
    def _names(self):
        for name in [self.name, *(problem["name"] for problem in [*self.extra, *self.validation])]:
            _known(name, TASKS, "problem")
        combinations = math.prod(len(values) for values in self.grid.values())
        if combinations > MAX_GRID_PROBLEMS:
            raise L2OError(f"problem grid has {combinations} combinations, each its own compiled program; "
                           f"give at most {MAX_GRID_PROBLEMS} (fewer values per option)")
        return self

    def problems(self) -> list[tuple[str, dict]]:
        """``(name, options)`` of every problem family: ``name`` with ``options`` at each point of
        ``grid`` (the first grid value of every option first, the last option varying fastest),
        then the ``extra`` ones."""
        points = [dict(zip(self.grid, values)) for values in itertools.product(*self.grid.values())]
        return [*((self.name, {**self.options, **point}) for point in points),
                *((extra["name"], extra["options"]) for extra in self.extra)]


class OptimizerConfig(Section):
    """The learned architecture and its hyperparameters."""

    name: str = Field("DM", description=f"learned architecture: {', '.join(LEARNED)}")
    options: dict = Field({}, description="the architecture's hyperparameters")

    @model_validator(mode="after")
    def _name(self):
        _known(self.name, LEARNED, "learned optimizer")
        return self


class MetaLossConfig(Section):
    """The fields of :class:`l2o.meta.losses.MetaLoss` (Keras L2O's ``loss_args``)."""

    weighting: Literal[tuple(WEIGHTINGS)] = Field("sum", description=f"meta-loss step weights: {', '.join(WEIGHTINGS)}")
    log_objective: bool = Field(False, description="minimize the log of the losses")
    scale_objective: bool = Field(False, description="divide each run's losses by its initial loss")
    epsilon: Annotated[float, Field(gt=0)] = Field(1e-30, description="numerical floor of the log and the scaling")
    numerator_epsilon: bool = Field(True, description="add epsilon to the scaled loss's numerator too")
    max_multiplier: float = Field(0.0, description="if positive, cut a run whose loss exceeds this multiple "
                                  "of its initial loss")
    loss_before_step: bool = Field(False, description="take each inner step's loss from its gradient "
                                   "evaluation, before the step (one forward pass fewer per step; the "
                                   "losses shift by one step)")


class EstimatorConfig(Section):
    """The meta-gradient estimator (:mod:`l2o.meta.estimators`)."""

    name: Literal[tuple(ESTIMATORS)] = Field("truncated", description=f"meta-gradient estimator: "
                                             f"{describe_estimators()}")
    second_derivatives: bool = Field(False, description="differentiate through the inner gradient (truncated "
                                     "only; the ES estimators always see the true dynamics)")
    perturbation_scale: Annotated[float, Field(gt=0)] = Field(0.01, description="standard deviation of the "
                                                              "es/pes perturbations")
    keep_optimizer_state: bool = Field(True, description="carry the learned optimizer's state from one "
                                       "truncation to the next (Keras L2O's persistent)")


class MetaOptimizerConfig(Section):
    """Adam on the meta-parameters, after clipping the meta-gradient's global norm, at a learning
    rate that is constant or decays over the epochs (:func:`l2o.meta.trainer.epoch_learning_rate`)."""

    learning_rate: Annotated[float, Field(gt=0)] = Field(1e-3, description="meta-optimizer (Adam) learning rate "
                                                         "(with a schedule, the first epoch's)")
    schedule: Literal["constant", "cosine"] = Field(
        "constant", description="constant, or cosine: from learning_rate in the first epoch to "
        "learning_rate * final_fraction in the last, along half a cosine, one rate per epoch")
    final_fraction: Annotated[float, Field(gt=0, le=1)] = Field(
        0.1, description="with schedule cosine, the last epoch's learning rate over the first's")
    betas: Annotated[list[Probability], Field(min_length=2, max_length=2)] = Field(
        [0.9, 0.999], description="Adam's decays")
    clip_norm: Annotated[float, Field(ge=0)] = Field(1.0, description="global-norm clip of the meta-gradient "
                                                     "(0: off)")


class ImitationConfig(Section):
    """Imitation of hand-designed optimizers (:meth:`l2o.meta.TruncatedBPTT.imitation_grad`)."""

    teachers: list[Teacher] = Field([], description="optimizers to imitate, "
                                    "{\"name\": \"Adam\", \"options\": {\"learning_rate\": 0.01}}")
    p_teacher: Probability = Field(0.0, description="probability that a meta-iteration is an imitation step")
    annealing_schedule: Union[Annotated[float, Field(ge=0)], list[Probability]] = Field(
        0.5, description="that probability is p_teacher * exp(-a * period) for a number a, or the list's "
        "entry per period")
    learning_rate: Union[Annotated[float, Field(gt=0)], None] = Field(
        None, description="imitation steps' own Adam learning rate (default: the meta-optimizer's)")

    @model_validator(mode="after")
    def _teachers(self):
        if self.p_teacher > 0 and not self.teachers:
            raise L2OError("p_teacher > 0 needs teachers, e.g. teachers=[{\"name\": \"Adam\", \"options\": {}}]")
        return self


class StrategyConfig(Section):
    """What each period trains on (:mod:`l2o.meta.strategies`); a period is ``evaluation_period``
    epochs between two validations."""

    name: Literal[tuple(STRATEGIES)] = Field("simple", description=f"training strategy: {describe_strategies()}")
    num_steps: Positive = Field(100, description="horizon: optimization steps per run")
    unroll_length: Positive = Field(20, description="steps per truncation (one meta-gradient each)")
    unroll_distribution: Union[Annotated[float, Field(gt=0, le=1)], Positive, list[Positive], None] = Field(
        None, description="truncation length per period: unroll_length (null), an integer, a list (one per "
        "period), or a probability p (geometric lengths of mean 1/p)")
    horizon_unrolls: Union[Positive, None] = Field(None, description="if set, a run lasts this many "
                                                   "truncations (Keras L2O's depth)")
    min_horizon: Union[Positive, None] = Field(None, description="if set, each inner run lasts a log-uniform "
                                               "number of steps in [min_horizon, num_steps] (long-horizon "
                                               "training, with pes)")
    stagger: bool = Field(False, description="start the population's first runs at random points, so that "
                          "every truncation sees early and late training")
    repeat: Positive = Field(1, description="full-horizon runs per member in an epoch")
    data_epochs: Union[Positive, None] = Field(None, description="for minibatch tasks, an epoch is this many "
                                               "passes over the training split instead")
    validation_steps: Union[Positive, None] = Field(None, description="horizon of the simple strategy's "
                                                    "validations (default: num_steps)")
    curriculum_schedule: Union[list[Positive], Growth] = Field(
        {"base": 50, "power": 2.0}, description="curriculum horizons: a list, or {base, power} for "
        "base * power ** i")
    min_periods: Positive = Field(1, description="fewest periods per curriculum stage")
    max_periods: Union[Positive, None] = Field(None, description="most periods per curriculum stage (null: "
                                               "while its validation improves)")
    max_stages: Annotated[int, Field(ge=0)] = Field(0, description="most curriculum stages (0: the whole list)")

    @model_validator(mode="after")
    def _consistent(self):
        if self.name == "curriculum" and not isinstance(self.curriculum_schedule, list) and self.max_stages == 0:
            raise L2OError("a curriculum_schedule of base and power needs max_stages > 0; set max_stages")
        if self.max_periods is not None and self.max_periods < self.min_periods:
            raise L2OError(f"max_periods ({self.max_periods}) is below min_periods ({self.min_periods}); "
                           "choose max_periods >= min_periods")
        if self.min_horizon is not None and self.min_horizon > self.num_steps:
            raise L2OError(f"min_horizon ({self.min_horizon}) exceeds num_steps ({self.num_steps}); "
                           "choose min_horizon <= num_steps")
        if self.name == "simple" and self.unroll_length > self.num_steps:
            raise L2OError(f"unroll_length ({self.unroll_length}) is longer than the horizon num_steps "
                           f"({self.num_steps}); choose unroll_length <= num_steps")
        return self


class RunConfig(Section):
    """How long the run lasts, its population, validation, logging and seed."""

    num_epochs: Positive = Field(100, description="epochs of meta-training (one epoch = one full-horizon run)")
    population: Positive = Field(8, description="population: instances trained together (antithetic pairs "
                                 "for es/pes)")
    evaluation_period: Positive = Field(10, description="epochs between validations")
    validation_instances: Positive = Field(20, description="validation instances")
    log_period: Positive = Field(10, description="epochs between log lines (a checkpoint with each)")
    seed: Annotated[int, Field(ge=0)] = Field(0, description="seed of every random draw")
