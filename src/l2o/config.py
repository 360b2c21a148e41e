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

from typing import Any

import pydantic
from pydantic import BaseModel, ConfigDict, model_validator

from l2o.config_sections import (
    AugmentationConfig,
    EstimatorConfig,
    ImitationConfig,
    MetaLossConfig,
    MetaOptimizerConfig,
    OptimizerConfig,
    ProblemConfig,
    RunConfig,
    Section,
    StrategyConfig,
)
from l2o.errors import L2OError

__all__ = ["FLAT_NAMES", "SECTIONS", "AugmentationConfig", "EstimatorConfig", "ImitationConfig", "MetaLossConfig",
           "MetaOptimizerConfig", "OptimizerConfig", "ProblemConfig", "RunConfig", "StrategyConfig", "TrainConfig",
           "merge", "sectioned"]

SECTIONS: dict[str, type[Section]] = {
    "problem": ProblemConfig, "optimizer": OptimizerConfig, "meta_loss": MetaLossConfig,
    "estimator": EstimatorConfig, "meta_optimizer": MetaOptimizerConfig, "imitation": ImitationConfig,
    "strategy": StrategyConfig, "run": RunConfig,
}
# Flat names that differ from the field's own name (DeepMind's flags, l2o's first config.json).
_RENAMED = {
    ("problem", "name"): "problem", ("problem", "options"): "problem_options",
    ("problem", "extra"): "extra_problems", ("problem", "grid"): "problem_grid",
    ("problem", "validation"): "validation_problems", ("optimizer", "name"): "optimizer",
    ("optimizer", "options"): "optimizer_options", ("meta_loss", "epsilon"): "loss_epsilon",
    ("estimator", "name"): "estimator", ("meta_optimizer", "betas"): "meta_betas",
    ("meta_optimizer", "schedule"): "meta_schedule", ("meta_optimizer", "final_fraction"): "meta_final_fraction",
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
