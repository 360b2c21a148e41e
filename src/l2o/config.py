"""The meta-training configuration: one typed section per object that consumes it.

A :class:`TrainConfig` is written to a run's ``config.json`` as its sections::

    problem         ProblemConfig        the tasks trained on         (l2o.tasks, MetaTrainer)
    optimizer       OptimizerConfig      the learned architecture     (l2o.optimizers.get_learned)
    meta_loss       MetaLossConfig       per-step losses -> scalar    (l2o.meta.losses.MetaLoss)
    estimator       EstimatorConfig      the meta-gradient            (l2o.meta.estimators)
    meta_optimizer  MetaOptimizerConfig  Adam on the meta-parameters  (MetaTrainer)
    imitation       ImitationConfig      imitating hand-designed ones (l2o.meta.imitation)
    strategy        StrategyConfig       horizons and truncations     (l2o.meta.strategies)
    run             RunConfig            epochs, population, logging  (MetaTrainer)

Every setting also has a *flat name*, DeepMind's flag name where there is one
(:data:`FLAT_NAMES`: ``num_steps`` is ``strategy/num_steps``, ``n_samplings`` is
``run/population``); a configuration can be given in either spelling, and files written by l2o
before the sections existed still load. Every mistake raises a one-line :class:`L2OError`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

import pydantic
from pydantic import BaseModel, ConfigDict, Field, model_validator
from typing_extensions import TypedDict

from l2o.errors import L2OError
from l2o.meta.estimators import ESTIMATORS, describe_estimators
from l2o.meta.losses import WEIGHTINGS
from l2o.meta.strategies import STRATEGIES, describe_strategies
from l2o.optimizers import LEARNED
from l2o.tasks import TASKS

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


class ProblemConfig(Section):
    """The problem families meta-trained on; evaluation uses the first."""

    name: str = Field("quadratic", description=f"problem to train on: {', '.join(TASKS)}")
    options: dict = Field({}, description="the problem's keyword arguments")
    extra: list[Problem] = Field([], description="more problem families, trained on in turn each epoch "
                                 "(each with its own population); validation scores the mean over all")
    random_scaling: Annotated[float, Field(ge=0)] = Field(
        0.0, description="meta-train on f(c*x), log c ~ U[-R, R] per coordinate (RNNProp's random scaling; "
        "0: off); validation stays unscaled")

    @model_validator(mode="after")
    def _names(self):
        for name in [self.name, *(extra["name"] for extra in self.extra)]:
            _known(name, TASKS, "problem")
        return self

    def problems(self) -> list[tuple[str, dict]]:
        """``(name, options)`` of every problem family, ``name`` first."""
        return [(self.name, self.options), *((extra["name"], extra["options"]) for extra in self.extra)]


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
    """Adam on the meta-parameters, after clipping the meta-gradient's global norm."""

    learning_rate: Annotated[float, Field(gt=0)] = Field(1e-3, description="meta-optimizer (Adam) learning rate")
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


SECTIONS: dict[str, type[Section]] = {
    "problem": ProblemConfig, "optimizer": OptimizerConfig, "meta_loss": MetaLossConfig,
    "estimator": EstimatorConfig, "meta_optimizer": MetaOptimizerConfig, "imitation": ImitationConfig,
    "strategy": StrategyConfig, "run": RunConfig,
}
# Flat names that differ from the field's own name (DeepMind's flags, l2o's first config.json).
_RENAMED = {
    ("problem", "name"): "problem", ("problem", "options"): "problem_options",
    ("problem", "extra"): "extra_problems", ("optimizer", "name"): "optimizer",
    ("optimizer", "options"): "optimizer_options", ("meta_loss", "epsilon"): "loss_epsilon",
    ("estimator", "name"): "estimator", ("meta_optimizer", "betas"): "meta_betas",
    ("imitation", "learning_rate"): "imitation_learning_rate", ("strategy", "name"): "strategy",
    ("run", "population"): "n_samplings", ("run", "validation_instances"): "evaluation_epochs",
}
# Flat name -> (section, field), for every field of every section.
FLAT_NAMES: dict[str, tuple[str, str]] = {
    _RENAMED.get((section, field), field): (section, field) for section, cls in SECTIONS.items()
    for field in cls.model_fields
}
_FLAT_NAME_OF = {place: name for name, place in FLAT_NAMES.items()}


def sectioned(values: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``values`` in either spelling as ``{section: {field: value}}``.

    A key that is a section's name with an object value is that section; any other key is a
    flat name. A setting given twice raises :class:`L2OError`.
    """
    result: dict[str, dict[str, Any]] = {}
    spelled: dict[tuple[str, str], str] = {}
    for key, value in values.items():
        if key in SECTIONS and isinstance(value, (dict, Section)):
            fields = value.model_dump() if isinstance(value, Section) else value
            unknown = sorted(set(fields) - set(SECTIONS[key].model_fields))
            if unknown:
                raise L2OError(f"unknown config key {key}/{unknown[0]}; the keys of {key} are "
                               f"{', '.join(SECTIONS[key].model_fields)}")
            entries = [((key, field), f"{key}/{field}", item) for field, item in fields.items()]
        elif key in FLAT_NAMES:
            entries = [(FLAT_NAMES[key], key, value)]
        else:
            raise L2OError(f"unknown config key {key!r}; valid keys: the sections {', '.join(SECTIONS)}, "
                           f"or the flat names {', '.join(FLAT_NAMES)}")
        for (section, field), spelling, item in entries:
            if (section, field) in spelled:
                raise L2OError(f"config key {spelling} sets {section}/{field}, which {spelled[section, field]} "
                               "already sets; give it once")
            spelled[section, field] = spelling
            result.setdefault(section, {})[field] = item
    return result


def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Both in either spelling, sectioned, ``update`` winning; ``options`` objects merge by key."""
    merged = {section: dict(fields) for section, fields in sectioned(base).items()}
    for section, fields in sectioned(update).items():
        target = merged.setdefault(section, {})
        for field, value in fields.items():
            if field == "options" and isinstance(value, dict) and isinstance(target.get(field), dict):
                value = {**target[field], **value}
            target[field] = value
    return merged


class TrainConfig(BaseModel):
    """Everything that defines a meta-training run (written to ``config.json``), by section.

    An *epoch* is, by default, one full-horizon run of every population member: ``ceil(num_steps /
    unroll_length)`` meta-iterations, as in DeepMind's ``train.py``; ``repeat`` and
    ``data_epochs`` change that (:func:`l2o.meta.strategies.epoch_iterations`). Built from
    sections or flat names: ``TrainConfig(num_steps=50)`` equals
    ``TrainConfig(strategy={"num_steps": 50})``.
    """

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    problem: ProblemConfig = ProblemConfig()
    optimizer: OptimizerConfig = OptimizerConfig()
    meta_loss: MetaLossConfig = MetaLossConfig()
    estimator: EstimatorConfig = EstimatorConfig()
    meta_optimizer: MetaOptimizerConfig = MetaOptimizerConfig()
    imitation: ImitationConfig = ImitationConfig()
    strategy: StrategyConfig = StrategyConfig()
    run: RunConfig = RunConfig()

    @model_validator(mode="before")
    @classmethod
    def _from_either_spelling(cls, values: Any) -> Any:
        return sectioned(values) if isinstance(values, dict) else values

    @model_validator(mode="after")
    def _consistent(self):
        if self.imitation.teachers and self.estimator.name != "truncated":
            raise L2OError("imitation (teachers) needs estimator=truncated; drop teachers or change the estimator")
        return self

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """The sections as plain JSON-ready dicts (what ``config.json`` holds)."""
        return self.model_dump()

    def flat(self) -> dict[str, Any]:
        """Every setting by its flat name."""
        sections = self.to_dict()
        return {name: sections[section][field] for name, (section, field) in FLAT_NAMES.items()}

    def problems(self) -> list[tuple[str, dict]]:
        """``(name, options)`` of every problem family meta-trained on, the evaluated one first."""
        return self.problem.problems()

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes`` (flat names or sections; ``options`` merged by key) applied."""
        return TrainConfig.from_dict(merge(self.to_dict(), changes))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Builds and validates a configuration; any mistake raises a one-line :class:`L2OError`."""
        try:
            return cls(**values)
        except pydantic.ValidationError as error:
            raise L2OError(describe_validation_error(error)) from None


def describe_validation_error(error: pydantic.ValidationError) -> str:
    """The first key pydantic rejected, as ``config key K: what is wrong, got V``.

    For a key that accepts several types, every alternative's complaint is listed.
    """
    errors = error.errors()
    key = errors[0]["loc"][:2]
    same_key = [e for e in errors if e["loc"][:2] == key]
    messages = list(dict.fromkeys(e["msg"][0].lower() + e["msg"][1:] for e in same_key))
    loc = [str(part) for part in (same_key[0]["loc"] if len(same_key) == 1 else key)]
    where = "/".join(loc)
    if tuple(key) in _FLAT_NAME_OF:  # name it as the flags do, and by its place in config.json
        where = f"{'/'.join([_FLAT_NAME_OF[tuple(key)], *loc[2:]])} ({where})"
    return f"config key {where}: {'; or '.join(messages)}, got {same_key[0]['input']!r}"
