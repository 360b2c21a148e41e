"""Typed meta-training configuration (validated by pydantic), overrides, and per-problem defaults."""

from __future__ import annotations

import dataclasses
import json
from typing import Annotated, Any, Literal, Union

import pydantic
from pydantic import ConfigDict, Field
from typing_extensions import TypedDict

from l2o.errors import L2OError
from l2o.meta.estimators import ESTIMATORS
from l2o.meta.losses import WEIGHTINGS
from l2o.optimizers import LEARNED
from l2o.tasks import TASKS

# Settings added after checkpoint format 1, with their defaults (see TrainConfig.identity).
LATER_DEFAULTS = {"extra_problems": [], "repeat": 1, "data_epochs": None, "keep_optimizer_state": True,
                  "max_periods": None}
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


@pydantic.dataclasses.dataclass(frozen=True, config=ConfigDict(strict=True, extra="forbid", allow_inf_nan=False))
class TrainConfig:
    """Everything that defines a meta-training run (written to ``config.json``).

    An *epoch* is, by default, one full-horizon run of every population member: ``ceil(num_steps /
    unroll_length)`` meta-iterations, as in DeepMind's ``train.py``; ``repeat`` and
    ``data_epochs`` change that (:func:`l2o.meta.strategies.epoch_iterations`).

    Attributes:
      problem: task name (``l2o.tasks.TASKS``); problem_options its keyword arguments.
      extra_problems: more problem families, ``{"name": "quadratic", "options": {}}``; every epoch
        trains on each problem in turn (its own population of ``n_samplings``), and validation
        scores the mean over the problems. Evaluation uses ``problem``.
      optimizer: learned architecture (``l2o.optimizers.LEARNED``); optimizer_options its
        hyperparameters.
      num_epochs: number of epochs of meta-training.
      num_steps: horizon, the length of a whole inner run.
      unroll_length: inner steps per truncation (one meta-gradient each).
      n_samplings: population size, problem instances trained on together (vmapped).
      learning_rate: Adam learning rate of the meta-optimizer; meta_betas: its decays.
      clip_norm: global-norm clipping of the meta-gradient (0 disables it).
      weighting: meta-loss step weights: ``sum``, ``mean`` or ``final``.
      log_objective: minimize the log of the inner losses.
      scale_objective, loss_epsilon, numerator_epsilon, max_multiplier: relative losses,
        numerical floor, and the cut of runs that blow up (:class:`l2o.meta.MetaLoss`; Keras
        L2O's ``loss_args``).
      second_derivatives: differentiate through the inner gradient (truncated BPTT only; the
        ES estimators always see the true dynamics).
      estimator: meta-gradient estimator: ``truncated`` (truncated BPTT), ``es`` (antithetic
        truncated ES) or ``pes`` (persistent ES, unbiased for the full horizon). With the ES
        estimators ``n_samplings`` counts antithetic pairs (``2 * n_samplings`` inner runs).
      perturbation_scale: standard deviation of the ES/PES perturbations of the meta-parameters.
      random_scaling: if positive, meta-train on randomly scaled objectives ``f(c * x)`` with
        ``log c ~ U[-random_scaling, random_scaling]`` per coordinate (Lv et al. 2017);
        validation stays on the unscaled problem.
      strategy: ``simple`` or ``curriculum`` (:mod:`l2o.meta.strategies`); a *period* is the
        ``evaluation_period`` epochs between two validations.
      unroll_distribution: truncation length per period: ``None`` (``unroll_length``), an
        integer, a list (one per period, the last repeated), or a probability ``p`` (lengths drawn
        from a geometric distribution of mean ``1/p``).
      horizon_unrolls: if set, a run lasts this many truncations (Keras L2O's ``depth``) instead
        of ``num_steps`` steps.
      repeat: full-horizon runs per member in an epoch (Keras L2O's ``training/repeat``).
      data_epochs: for minibatch tasks, an epoch is instead this many passes over the training
        split, counted in inner steps (Keras L2O's ``training/epochs``); ignored by full-batch tasks.
      keep_optimizer_state: carry the learned optimizer's state from one truncation to the next
        within a run; if False each truncation starts from a fresh state, the optimizee's
        parameters carrying on (Keras L2O's ``training/persistent``).
      validation_steps: horizon of the validations of the ``simple`` strategy (default
        ``num_steps``).
      curriculum_schedule, min_periods, max_periods, max_stages: the ``curriculum`` horizons (a
        list, or ``{"base": b, "power": q}`` for ``b * q ** i``), the fewest periods per stage, the
        most periods per stage (``None``: a stage lasts while its validation improves), and the
        most stages (0: the whole list).
      teachers: hand-designed optimizers to imitate, ``{"name": "Adam", "options":
        {"learning_rate": 0.01}}`` (names of ``l2o.optimizers.BASELINES``).
      p_teacher, annealing_schedule: the probability that a meta-iteration is an imitation step
        (:mod:`l2o.meta.imitation`) is ``p_teacher * exp(-a * period)`` for a number ``a``, or
        the list's entry per period.
      imitation_learning_rate: if set, imitation steps use their own Adam at this rate (Keras
        L2O's ``imitation_optimizer``); otherwise the meta-optimizer's.
      evaluation_period: epochs between validations on fresh instances at the full horizon.
      evaluation_epochs: number of validation instances.
      log_period: epochs between log lines; a checkpoint to resume from is written with each.
      seed: seed of every random draw of the run.
    """

    problem: str = "quadratic"
    problem_options: dict = dataclasses.field(default_factory=dict)
    extra_problems: list[Problem] = dataclasses.field(default_factory=list)
    optimizer: str = "DM"
    optimizer_options: dict = dataclasses.field(default_factory=dict)
    num_epochs: Positive = 100
    num_steps: Positive = 100
    unroll_length: Positive = 20
    n_samplings: Positive = 8
    learning_rate: Annotated[float, Field(gt=0)] = 1e-3
    meta_betas: Annotated[list[Probability], Field(min_length=2, max_length=2)] = dataclasses.field(
        default_factory=lambda: [0.9, 0.999])
    clip_norm: Annotated[float, Field(ge=0)] = 1.0
    weighting: Literal[tuple(WEIGHTINGS)] = "sum"
    log_objective: bool = False
    scale_objective: bool = False
    loss_epsilon: Annotated[float, Field(gt=0)] = 1e-30
    numerator_epsilon: bool = True
    max_multiplier: float = 0.0
    second_derivatives: bool = False
    estimator: Literal[tuple(ESTIMATORS)] = "truncated"
    perturbation_scale: Annotated[float, Field(gt=0)] = 0.01
    random_scaling: Annotated[float, Field(ge=0)] = 0.0
    strategy: Literal["simple", "curriculum"] = "simple"
    unroll_distribution: Union[Annotated[float, Field(gt=0, le=1)], Positive, list[Positive], None] = None
    horizon_unrolls: Union[Positive, None] = None
    repeat: Positive = 1
    data_epochs: Union[Positive, None] = None
    keep_optimizer_state: bool = True
    validation_steps: Union[Positive, None] = None
    curriculum_schedule: Union[list[Positive], Growth] = dataclasses.field(
        default_factory=lambda: {"base": 50, "power": 2.0})
    min_periods: Positive = 1
    max_periods: Union[Positive, None] = None
    max_stages: Annotated[int, Field(ge=0)] = 0
    teachers: list[Teacher] = dataclasses.field(default_factory=list)
    p_teacher: Probability = 0.0
    annealing_schedule: Union[Annotated[float, Field(ge=0)], list[Probability]] = 0.5
    imitation_learning_rate: Union[Annotated[float, Field(gt=0)], None] = None
    evaluation_period: Positive = 10
    evaluation_epochs: Positive = 20
    log_period: Positive = 10
    seed: Annotated[int, Field(ge=0)] = 0

    def __post_init__(self):
        for name in [self.problem, *(extra["name"] for extra in self.extra_problems)]:
            if name not in TASKS:
                raise L2OError(f"unknown problem {name!r}; choose one of: {', '.join(TASKS)}")
        if self.optimizer not in LEARNED:
            raise L2OError(f"unknown learned optimizer {self.optimizer!r}; choose one of: {', '.join(LEARNED)}")
        if self.strategy == "curriculum" and not isinstance(self.curriculum_schedule, list) and self.max_stages == 0:
            raise L2OError("a curriculum_schedule of base and power needs max_stages > 0; set max_stages")
        if self.max_periods is not None and self.max_periods < self.min_periods:
            raise L2OError(f"max_periods ({self.max_periods}) is below min_periods ({self.min_periods}); "
                           "choose max_periods >= min_periods")
        if self.teachers and self.estimator != "truncated":
            raise L2OError("imitation (teachers) needs estimator=truncated; drop teachers or change the estimator")
        if self.p_teacher > 0 and not self.teachers:
            raise L2OError("p_teacher > 0 needs teachers, e.g. teachers=[{\"name\": \"Adam\", \"options\": {}}]")
        if self.strategy == "simple" and self.unroll_length > self.num_steps:
            raise L2OError(
                f"unroll_length ({self.unroll_length}) is longer than the horizon num_steps "
                f"({self.num_steps}); choose unroll_length <= num_steps"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def problems(self) -> list[tuple[str, dict]]:
        """``(name, options)`` of every problem family meta-trained on, ``problem`` first."""
        return [(self.problem, self.problem_options), *((p["name"], p["options"]) for p in self.extra_problems)]

    def identity(self) -> dict[str, Any]:
        """What identifies the run for resuming: :meth:`to_dict` without the settings added after
        checkpoint format 1 while they keep their defaults, so that earlier runs still resume."""
        return {key: value for key, value in self.to_dict().items()
                if key not in LATER_DEFAULTS or value != LATER_DEFAULTS[key]}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        """Builds and validates a configuration; any mistake raises a one-line :class:`L2OError`."""
        known = [field.name for field in dataclasses.fields(cls)]
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise L2OError(f"unknown config key(s) {', '.join(unknown)}; valid keys: {', '.join(known)}")
        try:
            return cls(**values)
        except pydantic.ValidationError as error:
            raise L2OError(describe_validation_error(error)) from None


def describe_validation_error(error: pydantic.ValidationError) -> str:
    """The first key pydantic rejected, as ``config key K: what is wrong, got V``.

    For a key that accepts several types, every alternative's complaint is listed.
    """
    errors = error.errors()
    key = errors[0]["loc"][0]
    same_key = [e for e in errors if e["loc"][0] == key]
    messages = list(dict.fromkeys(e["msg"][0].lower() + e["msg"][1:] for e in same_key))
    where = "/".join(str(part) for part in same_key[0]["loc"]) if len(same_key) == 1 else str(key)
    return f"config key {where}: {'; or '.join(messages)}, got {same_key[0]['input']!r}"


def apply_overrides(values: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Applies ``KEY=VALUE`` overrides to a nested configuration dict (a new dict is returned).

    ``KEY`` is a path with ``/`` or ``.`` between levels (``optimizer_options/layers=[40,40]``;
    list entries by index, ``problems/0/kwargs/batch_size=16``);
    ``VALUE`` is read as JSON when it parses (numbers, ``true``, lists, objects), else as a string.
    """
    result = json.loads(json.dumps(values))
    for text in overrides:
        key, sep, raw = text.partition("=")
        if not sep or not key:
            raise L2OError(f"override {text!r} is not KEY=VALUE; write e.g. num_epochs=10 or "
                           "optimizer_options/layers=[40]")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        *parents, leaf = key.replace(".", "/").split("/")
        node = result
        for part in parents:
            if isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
                continue
            if not isinstance(node, dict):
                break
            node = node.setdefault(part, {})
        if isinstance(node, list) and leaf.isdigit() and int(leaf) < len(node):
            node[int(leaf)] = value
        elif isinstance(node, dict):
            node[leaf] = value
        else:
            raise L2OError(f"override {text!r}: {'/'.join(parents)} holds a value, not a section of settings")
    return result



# Defaults that reproduce each problem's reference experiment; explicit settings override them.
PROBLEM_PRESETS: dict[str, dict[str, Any]] = {
    # DeepMind's train.py defaults (horizon 100, unroll 20, Adam 1e-3) with second derivatives,
    # which on this problem beat the stop-gradient variant (docs/RESULTS.md).
    "quadratic": {
        "num_steps": 100,
        "unroll_length": 20,
        "second_derivatives": True,
        "optimizer_options": {"preprocess": "log_sign", "output_scale": 0.1},
    },
    # The notebook's best setting: 20 steps, log rescaling at -30, log of the final loss; plus
    # a population of 32 and the odd-symmetric LSTM (docs/RESULTS.md explains why).
    "scaled-quadratic": {
        "num_steps": 20,
        "unroll_length": 20,
        "weighting": "final",
        "log_objective": True,
        "second_derivatives": True,
        "n_samplings": 32,
        "optimizer_options": {"preprocess": "log_rescale", "min_log_gradient": -30.0,
                              "output_scale": 1.0, "symmetric": True},
    },
    # DeepMind's MNIST setting (horizon 100, unroll 20, LogAndSign) with a population of 4, meta
    # learning rate 3e-4 and second derivatives (first-order meta-gradients oscillated by up to
    # 0.5 decades and stayed above every tuned baseline), and the odd-symmetric LSTM: without
    # it two of three training seeds never left the initial plateau (docs/RESULTS.md).
    "mnist": {
        "num_steps": 100,
        "unroll_length": 20,
        "n_samplings": 4,
        "learning_rate": 3e-4,
        "second_derivatives": True,
        "optimizer_options": {"preprocess": "log_sign", "output_scale": 0.1, "symmetric": True},
    },
    # DeepMind's CIFAR-10 setting; first-order meta-gradient through the convolutional net.
    "cifar": {
        "num_steps": 100,
        "unroll_length": 20,
        "n_samplings": 1,
        "optimizer_options": {"preprocess": "log_sign", "output_scale": 0.1},
    },
    # As cifar, with one DM for the convolution kernels and another for everything else.
    "cifar-multi": {
        "num_steps": 100,
        "unroll_length": 20,
        "n_samplings": 1,
        "optimizer": "Multi",
        "optimizer_options": {"groups": [
            {"name": "conv", "pattern": r"conv/\d+/w", "optimizer": "DM",
             "options": {"preprocess": "log_sign", "output_scale": 0.1}},
            {"name": "fc", "pattern": ".*", "optimizer": "DM",
             "options": {"preprocess": "log_sign", "output_scale": 0.1}},
        ]},
    },
    # DeepMind's simple-multi: x_0 by the learned optimizer, x_1 by Adam at learning rate 0.1.
    "simple-multi": {
        "num_steps": 100,
        "unroll_length": 20,
        "optimizer": "Multi",
        "optimizer_options": {"groups": [
            {"name": "learned", "pattern": "x_0", "optimizer": "DM",
             "options": {"layers": [], "preprocess": "none", "output_scale": 0.01}},
            {"name": "adam", "pattern": ".*", "optimizer": "Adam", "options": {"learning_rate": 0.1}},
        ]},
    },
    "simple": {
        "num_steps": 100,
        "unroll_length": 20,
        "optimizer_options": {"layers": [], "preprocess": "none", "output_scale": 0.01},
    },
}


def preset_config(problem: str, **overrides: Any) -> TrainConfig:
    """The configuration of ``problem``'s reference experiment with ``overrides`` applied.

    ``optimizer_options`` and ``problem_options`` in ``overrides`` are merged into the preset's;
    choosing another ``optimizer`` than the preset's drops the preset's ``optimizer_options``.
    """
    if problem not in TASKS:
        raise L2OError(f"unknown problem {problem!r}; choose one of: {', '.join(TASKS)}")
    values: dict[str, Any] = {"problem": problem, **PROBLEM_PRESETS.get(problem, {})}
    if overrides.get("optimizer", values.get("optimizer", "DM")) != values.get("optimizer", "DM"):
        values.pop("optimizer_options", None)  # the preset's hyperparameters are another architecture's
    for key, value in overrides.items():
        if key in ("optimizer_options", "problem_options"):
            values[key] = {**values.get(key, {}), **value}
        else:
            values[key] = value
    return TrainConfig.from_dict(values)
