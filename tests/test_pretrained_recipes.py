"""The meta-training recipes shipped in the package are complete, valid configurations that
`l2o train RECIPE` runs as written (every key read, none ignored)."""

import json
from pathlib import Path

import pytest

from l2o import cli
from l2o.cli.commands import train_arguments

RECIPES = sorted((Path(__file__).resolve().parents[1] / "src" / "l2o" / "pretrained" / "recipes").glob("*.json"))


def test_there_is_a_recipe():
    assert RECIPES


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda path: path.stem)
def test_a_recipe_is_the_configuration_it_trains_with(recipe):
    config, _ = train_arguments(cli._make_parser().parse_args(["train", str(recipe)]))
    assert config.model_dump(mode="json") == json.loads(recipe.read_text())
