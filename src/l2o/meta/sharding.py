"""Spreading the population axis over devices with ``jax.sharding``.

Every leaf of a population pytree has the population as its leading axis; sharding that axis
puts each device in charge of a slice of the members, while ``theta`` and the meta-optimizer
state are replicated. ``jax.jit`` then compiles one SPMD program: each device unrolls its own
members and the population mean of the meta-gradient becomes an all-reduce. On several hosts,
call ``jax.distributed.initialize()`` first (docs/multi_device.md); ``jax.devices()`` then lists
every host's devices and the same code applies.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

PyTree = Any
AXIS = "population"


def population_mesh(population: int, devices: list | None = None) -> Mesh | None:
    """A one-axis mesh over the most devices (of ``devices``, default all) that divide ``population``.

    Returns ``None`` when only one device would be used.
    """
    devices = list(jax.devices() if devices is None else devices)
    count = max(d for d in range(1, len(devices) + 1) if population % d == 0)
    return Mesh(np.array(devices[:count]), (AXIS,)) if count > 1 else None


def _place(tree: PyTree, sharding: NamedSharding) -> PyTree:
    # Every process holds the whole (identical) value and contributes its devices' slices, so
    # this works on one host and on several.
    def place(leaf):
        value = np.asarray(leaf)
        return jax.make_array_from_process_local_data(sharding, value, value.shape)

    return jax.tree.map(place, tree)


def shard_population(tree: PyTree, mesh: Mesh) -> PyTree:
    """Places each leaf's leading (population) axis across ``mesh``."""
    return _place(tree, NamedSharding(mesh, PartitionSpec(AXIS)))


def replicate(tree: PyTree, mesh: Mesh) -> PyTree:
    """Places a full copy of every leaf on every device of ``mesh``."""
    return _place(tree, NamedSharding(mesh, PartitionSpec()))


def population_size(states: PyTree) -> int:
    """Length of the leading axis shared by the leaves of ``states``."""
    return jax.tree.leaves(states)[0].shape[0]
