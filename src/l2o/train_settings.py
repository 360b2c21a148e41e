"""From what a user typed to a :class:`~l2o.config.TrainConfig`: a JSON file, ``KEY=VALUE``
overrides and flag values, on top of the problem's preset.

``l2o train`` and ``l2o baseline`` hand their arguments to :func:`train_config`; everything
decided from them is here, where it can be tested without a command line.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from l2o.config import FLAT_NAMES, SECTIONS, TrainConfig, merge, sectioned
from l2o.errors import L2OError
from l2o.evaluation_plan import problem_options
from l2o.keras_l2o_format import from_sectioned, is_sectioned
from l2o.presets import preset_config


def apply_overrides(values: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Applies ``KEY=VALUE`` overrides to a nested configuration dict (a new dict is returned).

    ``KEY`` is a path with ``/`` or ``.`` between levels (``optimizer_options/layers=[40,40]``;
    list entries by index, ``problems/0/kwargs/batch_size=16``);
    ``VALUE`` is read as JSON when it parses (numbers, ``true``, lists, objects), else as a string.
    """
    result = copy.deepcopy(values)
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


def read_json_object(path: Path) -> dict:
    """The JSON object in ``path``; anything else is a one-line :class:`L2OError`."""
    if path.is_dir():
        raise L2OError(f"configuration file {path} is a directory; pass a JSON file such as {path / 'config.json'}")
    if not path.is_file():
        raise L2OError(f"configuration file {path} does not exist; pass a JSON file such as a run's config.json")
    try:
        values = json.loads(path.read_text())
    except ValueError as error:
        raise L2OError(f"{path} is not valid JSON ({error}); fix the file") from None
    if not isinstance(values, dict):
        raise L2OError(f"{path} must hold a JSON object of settings, not a {type(values).__name__}")
    return values


def _section_path(override: str) -> str:
    """A ``KEY=VALUE`` override with a flat name's key written as its place in the sections
    (``num_epochs=5`` -> ``run/num_epochs=5``, ``optimizer_options/layers=[4]`` ->
    ``optimizer/options/layers=[4]``); a path into a section is kept."""
    key, sep, value = override.partition("=")
    first, *rest = key.replace(".", "/").split("/")
    if (rest and first in SECTIONS) or first not in FLAT_NAMES:
        return override
    return "/".join([*FLAT_NAMES[first], *rest]) + sep + value


def file_settings(items: list[str]) -> tuple[dict, str | None]:
    """The sectioned settings of ``[CONFIG] [KEY=VALUE ...]`` and the run directory the file names.

    The file holds l2o's settings (sections or flat names) or the sectioned Keras-L2O format
    (:mod:`l2o.keras_l2o_format`); overrides apply to the file as written
    (``strategy/epochs_per_period=5`` for a Keras-L2O one) before it is translated.
    """
    files = [item for item in items if "=" not in item]
    if len(files) > 1 or (files and items[0] != files[0]):
        raise L2OError("give at most one configuration file, before the KEY=VALUE overrides")
    values = read_json_object(Path(files[0])) if files else {}
    overrides = [item for item in items if "=" in item]
    if is_sectioned(values):
        values, directory = from_sectioned(apply_overrides(values, overrides))
        return sectioned(values), directory
    return apply_overrides(sectioned(values), [_section_path(item) for item in overrides]), None


def train_config(items: list[str], flags: dict[str, Any], given_problem_options: dict | None = None,
                 optimizer_options: dict | None = None, data_dir: str | None = None) -> tuple[TrainConfig, str | None]:
    """The configuration of ``[CONFIG] [KEY=VALUE ...]`` (:func:`file_settings`), then ``flags``
    (flat names; ``None`` values are not given), then the options given one by one, over the
    problem's preset; and the run directory the file names, if any."""
    settings, directory = file_settings(items)
    values = merge(settings, {name: value for name, value in flags.items() if value is not None})
    problem = values.get("problem", {}).get("name", "quadratic")
    if not isinstance(problem, str):
        raise L2OError(f"config key problem (problem/name): expected a problem name, got {problem!r}")
    options = problem_options(problem, given_problem_options or {}, data_dir)
    values = merge(values, {"problem_options": options, "optimizer_options": optimizer_options or {}})
    return preset_config(problem, **values), directory
