"""The sectioned configuration format of Keras L2O, translated to :class:`l2o.config.TrainConfig`.

A sectioned file has the keys ``problems``, ``loss_args``, ``optimizer``, ``directory``,
``training``, ``strategy_constructor``, ``strategy``, ``constructor`` and ``network`` (the Keras L2O
README's sample configuration loads as written). Each setting maps to one l2o key; a setting
without an l2o equivalent is refused with a message saying why, never silently dropped:

=========================================  ==================================================
sectioned                                  l2o
=========================================  ==================================================
``problems``                               ``problem`` = first target, ``problem_options`` = its kwargs;
                                           ``extra_problems`` = the others (trained in turn)
``loss_args/use_log_objective``            ``log_objective``
``loss_args/scale_objective``              ``scale_objective``
``loss_args/obj_train_max_multiplier``     ``max_multiplier`` (negative: off)
``loss_args/use_numerator_epsilon``        ``numerator_epsilon``
``loss_args/epsilon``                      ``loss_epsilon``
``optimizer`` (Adam)                       ``learning_rate``, ``meta_betas``
``directory``                              the run directory, unless ``--save_path`` is given
``training/unroll_weights``                ``weighting``
``training/teachers``                      ``teachers`` (Keras names and keywords mapped)
``training/p_teacher``                     ``p_teacher``
``training/imitation_optimizer`` (Adam)    ``imitation_learning_rate``
``training/depth``                         ``horizon_unrolls`` (0: ``num_steps``)
``training/epochs``                        ``data_epochs`` (minibatch problems)
``training/repeat``                        ``repeat`` (full-batch problems)
``training/persistent``                    ``keep_optimizer_state``
``strategy_constructor``                   ``strategy``: Simple -> simple, CurriculumLearning -> curriculum
``strategy/epochs_per_period``             ``evaluation_period`` (a period ends in a validation)
``strategy/num_periods``                   ``num_epochs`` = epochs_per_period x num_periods
``strategy/unroll_distribution``           ``unroll_distribution``
``strategy/annealing_schedule``            ``annealing_schedule``
``strategy/validation_unroll``             ``validation_steps`` (x depth)
``strategy/schedule``                      ``curriculum_schedule`` (truncation lengths; x depth)
``strategy/min_periods, max_stages``       ``min_periods``, ``max_stages``
``constructor``, ``network``               ``optimizer``, ``optimizer_options``
=========================================  ==================================================

The Keras cell settings in ``network`` (``activation``, ``recurrent_activation``, ``use_bias``,
initializers, ``unit_forget_bias``, ``name``) are accepted at their seed defaults, which l2o's
cells match in activations, biases and forget bias; l2o initializes its cells its own way.
"""

from __future__ import annotations

from typing import Any

from l2o.errors import L2OError

SECTIONS = ("problems", "loss_args", "optimizer", "directory", "training", "strategy_constructor", "strategy",
            "constructor", "network")
# Keras cell settings accepted at these values only.
CELL_DEFAULTS = {"activation": "tanh", "recurrent_activation": "sigmoid", "use_bias": True,
                 "kernel_initializer": "glorot_uniform", "recurrent_initializer": "orthogonal",
                 "bias_initializer": "zeros", "unit_forget_bias": True}
# Keras optimizer keywords -> l2o baseline keywords.
KERAS_KEYWORDS = {"learning_rate": "learning_rate", "beta_1": "b1", "beta_2": "b2", "epsilon": "eps", "rho": "decay"}


def is_sectioned(values: dict) -> bool:
    """Whether a configuration dict is in the sectioned format."""
    return any(key in values for key in ("problems", "constructor", "network", "strategy_constructor", "loss_args"))


def _section(values: dict, name: str, known: tuple[str, ...]) -> dict:
    section = values.get(name, {})
    if section is None:
        return {}
    if not isinstance(section, dict):
        raise L2OError(f"{name} must be an object, got {section!r}")
    unknown = sorted(set(section) - set(known))
    if unknown:
        raise L2OError(f"unknown key(s) {', '.join(f'{name}/{k}' for k in unknown)}; valid: {', '.join(known)}")
    return section


def _keras_optimizer(spec: Any, where: str) -> tuple[str, dict]:
    """``{"class_name", "config"}`` -> (l2o baseline name, keyword options)."""
    if not isinstance(spec, dict) or set(spec) - {"class_name", "config"} or "class_name" not in spec:
        raise L2OError(f"{where} must be {{\"class_name\": ..., \"config\": {{...}}}}, got {spec!r}")
    name, config = spec["class_name"], dict(spec.get("config") or {})
    unknown = sorted(set(config) - set(KERAS_KEYWORDS) - {"momentum", "nesterov"})
    if unknown:
        raise L2OError(f"{where}/config: unsupported key(s) {', '.join(unknown)}; valid: "
                       f"{', '.join([*KERAS_KEYWORDS, 'momentum', 'nesterov'])}")
    momentum, nesterov = config.pop("momentum", 0.0), config.pop("nesterov", False)
    options = {KERAS_KEYWORDS[key]: value for key, value in config.items()}
    if name == "SGD" and momentum:
        name, options["decay"] = ("NAG" if nesterov else "Momentum"), momentum
    return name, options


def _problem(entry: dict, index: int) -> tuple[str, dict]:
    """``(task name, options)`` of the problem entry ``problems/<index>``."""
    where = f"problems/{index}"
    problem = _section({where: entry}, where, ("target", "args", "kwargs"))
    if problem.get("args"):
        raise L2OError(f"{where}/args: positional arguments are not supported; give them as kwargs")
    name = str(problem.get("target", "")).replace("scaled_quadratic", "scaled-quadratic").replace(
        "simple_multi", "simple-multi")
    return name, dict(problem.get("kwargs") or {})


def _integer(section: dict, key: str, default: int | None, minimum: int) -> int | None:
    """``strategy/KEY`` as an integer >= ``minimum`` (``default`` when absent), before any
    arithmetic is done with it."""
    value = section.get(key, default)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < minimum):
        raise L2OError(f"strategy/{key} must be an integer >= {minimum}, got {value!r}")
    return value


def _problems_section(values: dict) -> dict:
    """``problems``: the first is the problem, the others ``extra_problems``."""
    settings: dict[str, Any] = {}
    problems = values.get("problems")
    if not isinstance(problems, list) or not problems or not all(isinstance(p, dict) for p in problems):
        raise L2OError("problems must be a non-empty list of {target, args, kwargs} entries")
    translated = [_problem(problem, index) for index, problem in enumerate(problems)]
    settings["problem"], settings["problem_options"] = translated[0]
    if len(translated) > 1:
        settings["extra_problems"] = [{"name": name, "options": options} for name, options in translated[1:]]
    return settings


def _loss_section(values: dict) -> dict:
    """``loss_args``: the meta-loss settings."""
    settings: dict[str, Any] = {}
    loss = _section(values, "loss_args", ("scale_objective", "use_log_objective", "obj_train_max_multiplier",
                                          "use_numerator_epsilon", "epsilon"))
    for old, new in (("scale_objective", "scale_objective"), ("use_log_objective", "log_objective"),
                     ("use_numerator_epsilon", "numerator_epsilon"), ("epsilon", "loss_epsilon")):
        if old in loss:
            settings[new] = loss[old]
    if "obj_train_max_multiplier" in loss:
        multiplier = loss["obj_train_max_multiplier"]
        settings["max_multiplier"] = multiplier if isinstance(multiplier, (int, float)) and multiplier > 0 else 0.0
    return settings


def _meta_optimizer_section(values: dict) -> dict:
    """``optimizer``: the meta-optimizer, which must be Adam."""
    settings: dict[str, Any] = {}
    if "optimizer" in values:
        name, options = _keras_optimizer(values["optimizer"], "optimizer")
        if name.lower() != "adam" or set(options) - {"learning_rate", "b1", "b2"}:
            raise L2OError("optimizer: the meta-optimizer is Adam with learning_rate, beta_1 and beta_2; "
                           f"got {values['optimizer']!r}")
        if "learning_rate" in options:
            settings["learning_rate"] = options["learning_rate"]
        settings["meta_betas"] = [options.get("b1", 0.9), options.get("b2", 0.999)]
    return settings


def _training_section(values: dict) -> dict:
    """``training``: weights, imitation, epochs, depth, repeat, persistence."""
    settings: dict[str, Any] = {}
    training = _section(values, "training", ("unroll_weights", "teachers", "p_teacher", "imitation_optimizer",
                                             "strategy", "epochs", "depth", "repeat", "persistent"))
    if "unroll_weights" in training:
        settings["weighting"] = training["unroll_weights"]
    teachers = training.get("teachers") or []
    if not isinstance(teachers, list):
        raise L2OError(f"training/teachers must be a list, got {teachers!r}")
    settings["teachers"] = [dict(zip(("name", "options"), _keras_optimizer(t, f"training/teachers/{i}")))
                            for i, t in enumerate(teachers)]
    if "p_teacher" in training:
        settings["p_teacher"] = training["p_teacher"]
    if training.get("imitation_optimizer") is not None:
        name, options = _keras_optimizer(training["imitation_optimizer"], "training/imitation_optimizer")
        if name.lower() != "adam" or set(options) - {"learning_rate"}:
            raise L2OError("training/imitation_optimizer: l2o's imitation optimizer is Adam with a learning_rate")
        settings["imitation_learning_rate"] = options.get("learning_rate", 1e-3)
    if training.get("strategy", "mean") != "mean":
        raise L2OError("training/strategy: teachers are combined by their mean imitation loss; use \"mean\"")
    settings["data_epochs"] = training.get("epochs", 1)
    settings["repeat"] = training.get("repeat", 1)
    settings["keep_optimizer_state"] = training.get("persistent", False)
    depth = training.get("depth", 0)
    if not isinstance(depth, int) or depth < 0:
        raise L2OError(f"training/depth must be an integer >= 0, got {depth!r}")
    if depth > 0:
        settings["horizon_unrolls"] = depth
    return settings


def _strategy_section(values: dict, depth: int) -> dict:
    """``strategy_constructor`` and ``strategy``: periods, horizons, the curriculum."""
    settings: dict[str, Any] = {}
    kind = values.get("strategy_constructor", "Simple")
    if kind not in ("Simple", "CurriculumLearning"):
        raise L2OError(f"unknown strategy_constructor {kind!r}; choose Simple or CurriculumLearning")
    simple = kind == "Simple"
    known = (("epochs_per_period", "num_periods", "unroll_distribution", "annealing_schedule", "validation_unroll")
             if simple else ("epochs_per_period", "num_periods", "schedule", "min_periods", "max_stages",
                             "annealing_schedule"))
    strategy = _section(values, "strategy", known)
    counts = {key: _integer(strategy, key, default, minimum) for key, default, minimum in (
        ("epochs_per_period", 10, 1), ("num_periods", None, 1), ("validation_unroll", None, 1),
        ("min_periods", None, 1), ("max_stages", None, 0))}
    period = counts["epochs_per_period"]
    settings["strategy"] = "simple" if simple else "curriculum"
    settings["evaluation_period"] = period
    for key in ("unroll_distribution", "annealing_schedule", "min_periods", "max_stages"):
        if key in strategy:
            settings[key] = strategy[key]
    if simple:
        settings["num_epochs"] = period * (counts["num_periods"] or 100)
        if "validation_unroll" in strategy:
            settings["validation_steps"] = counts["validation_unroll"] * max(depth, 1)
    else:
        schedule = strategy.get("schedule", {"base": 50, "power": 2})
        settings["curriculum_schedule"] = schedule
        if isinstance(schedule, list):
            lengths = schedule
        else:
            stages = counts["max_stages"] or 0
            numbers = isinstance(schedule, dict) and set(schedule) == {"base", "power"} and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in schedule.values())
            lengths = [int(schedule["base"] * schedule["power"] ** i) for i in range(stages)] if numbers else []
        if lengths and all(isinstance(n, int) and not isinstance(n, bool) for n in lengths):
            # the truncation is a whole stage's length: at most the longest (a bad schedule is
            # reported by TrainConfig as curriculum_schedule)
            settings["unroll_length"] = max(lengths)
        if depth == 0:
            settings["horizon_unrolls"] = 1
        stages = counts["max_stages"] or (len(schedule) if isinstance(schedule, list) else 1)
        settings["num_epochs"] = period * (counts["num_periods"] or (counts["min_periods"] or 10) * stages)
    return settings


def _network_section(values: dict) -> dict:
    """``constructor`` and ``network``: the learned architecture and its hyperparameters."""
    settings: dict[str, Any] = {}
    if "constructor" in values:
        settings["optimizer"] = values["constructor"]
    network = values.get("network") or {}
    if not isinstance(network, dict):
        raise L2OError(f"network must be an object, got {network!r}")
    options = {}
    for key, value in network.items():
        if key == "name":
            continue
        if key in CELL_DEFAULTS:
            if value != CELL_DEFAULTS[key]:
                raise L2OError(f"network/{key}={value!r} is not supported; l2o's cells use {CELL_DEFAULTS[key]!r}")
            continue
        options[key] = value
    settings["optimizer_options"] = options
    return settings


def from_sectioned(values: dict) -> tuple[dict, str | None]:
    """Translates a sectioned configuration into ``(TrainConfig settings, directory)``."""
    unknown = sorted(set(values) - set(SECTIONS))
    if unknown:
        raise L2OError(f"unknown section(s) {', '.join(unknown)}; valid: {', '.join(SECTIONS)}")
    training = _training_section(values)
    settings = {**_problems_section(values), **_loss_section(values), **_meta_optimizer_section(values), **training,
                **_strategy_section(values, training.get("horizon_unrolls", 0)), **_network_section(values)}
    directory = values.get("directory")
    if directory is not None and not isinstance(directory, str):
        raise L2OError(f"directory must be a path, got {directory!r}")
    return settings, directory
