"""Shared test settings: slow reproduction runs are opt-in."""

import os

import pytest


def pytest_collection_modifyitems(config, items):
    if os.environ.get("L2O_RUN_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="long reproduction run; set L2O_RUN_SLOW=1 to run it")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
