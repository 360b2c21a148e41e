"""Several processes (hosts) meta-training one run, on JAX's multi-controller runtime.

Every process runs the same program on the same configuration; :func:`connect` joins them with
``jax.distributed.initialize`` before any other JAX call, after which ``jax.devices()`` lists every
process's devices and :class:`l2o.meta.MetaTrainer` shards its population over all of them.
Process 0 alone writes the run directory (:func:`is_writer`); the others receive what it read
(:func:`from_writer`), and population states spread over the processes are gathered before a
checkpoint is written (:func:`to_host`).
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np

from l2o.errors import L2OError

PyTree = Any
# Seconds a process waits for the others to connect, and without a heartbeat from one of them
# before it gives up: bounded, so that a process that died makes the others stop, not hang.
CONNECT_TIMEOUT = 120
HEARTBEAT_TIMEOUT = 30
# Process counts that cluster launchers set; with more than one, jax.distributed.initialize()
# finds everything by itself (so does JAX_COORDINATOR_ADDRESS, set by the user or a launcher).
_LAUNCHER_COUNTS = ("SLURM_STEP_NUM_TASKS", "SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE")


def _launched_as_several() -> bool:
    """Whether a launcher started this process as one of several (a single task is a single run)."""
    if os.environ.get("JAX_COORDINATOR_ADDRESS"):
        return True
    for name in _LAUNCHER_COUNTS:
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value) > 1
    return False


def connect(coordinator_address: str | None = None, num_processes: int | None = None,
            process_id: int | None = None) -> bool:
    """Joins this process to the others of a multi-process run; returns whether it did.

    With ``coordinator_address`` (``HOST:PORT`` of process 0), ``num_processes`` and this
    process's ``process_id`` (0 .. num_processes - 1), or with none of them when a launcher JAX
    recognizes started several processes (SLURM or Open MPI with more than one task, or
    ``JAX_COORDINATOR_ADDRESS`` set; JAX reads the rest itself). Otherwise nothing happens (a
    single process, also a single SLURM task). On CPU devices, collectives between processes
    go through gloo. Every mistake and a failure to connect within :data:`CONNECT_TIMEOUT`
    seconds is a one-line :class:`L2OError`.
    """
    given = {"--coordinator_address": coordinator_address, "--num_processes": num_processes,
             "--process_id": process_id}
    if all(value is None for value in given.values()):
        if not _launched_as_several():
            return False
    elif any(value is None for value in given.values()):
        missing = ", ".join(flag for flag, value in given.items() if value is None)
        raise L2OError(f"a multi-process run needs --coordinator_address, --num_processes and --process_id; "
                       f"{missing} missing")
    else:
        _check(coordinator_address, num_processes, process_id)
    if jax.config.jax_platforms in (None, "", "cpu"):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(coordinator_address, num_processes, process_id,
                                   initialization_timeout=CONNECT_TIMEOUT, heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT)
    except (RuntimeError, ValueError) as error:
        raise L2OError(f"could not join the other processes through {coordinator_address or 'the launcher'} "
                       f"within {CONNECT_TIMEOUT} s ({_first_line(error)}); start every process with the same "
                       "--coordinator_address and --num_processes, each with its own --process_id") from None
    return True


def _first_line(error: BaseException) -> str:
    """The first line of ``error``'s message (at most 200 characters), or its type's name."""
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else type(error).__name__


def _check(coordinator_address: str, num_processes: int, process_id: int) -> None:
    host, _, port = coordinator_address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise L2OError(f"--coordinator_address must be HOST:PORT (process 0's host and a free port), "
                       f"got {coordinator_address!r}")
    if num_processes < 1:
        raise L2OError(f"--num_processes must be at least 1, got {num_processes}")
    if not 0 <= process_id < num_processes:
        raise L2OError(f"--process_id must be in 0..{num_processes - 1} (--num_processes {num_processes}), "
                       f"got {process_id}")


def lost_contact(error: BaseException) -> str | None:
    """The one-line message for ``error`` if it is a multi-process run losing one of its
    processes (a collective failed), else ``None``."""
    if not isinstance(error, jax.errors.JaxRuntimeError) or jax.process_count() == 1:
        return None
    return (f"lost contact with another process of this run ({_first_line(error)}); if one of them died, start "
            "every process again with `l2o resume SAVE_PATH` and the same --coordinator_address, --num_processes "
            "and --process_id")


def is_writer() -> bool:
    """Whether this process writes the run directory (process 0; the only one of a single process)."""
    return jax.process_index() == 0


def from_writer(tree: PyTree) -> PyTree:
    """Process 0's value of ``tree`` in every process (``tree`` itself with one process).

    Every process must call it with a tree of the same structure and shapes; Python scalars come
    back as scalars of their type.
    """
    if jax.process_count() == 1:
        return tree
    from jax.experimental import multihost_utils

    leaves, structure = jax.tree.flatten(tree)
    received = multihost_utils.broadcast_one_to_all([np.asarray(leaf) for leaf in leaves])
    leaves = [type(leaf)(value.item()) if isinstance(leaf, (bool, int, float)) else value
              for leaf, value in zip(leaves, received)]
    return jax.tree.unflatten(structure, leaves)


def to_host(tree: PyTree) -> PyTree:
    """Every array of ``tree`` as a host array holding its whole value.

    Arrays whose slices live in other processes are gathered, which every process must take part
    in: call it in every process at the same point. Replicated arrays are read locally.
    """
    from jax.experimental import multihost_utils

    def get(leaf):
        if not isinstance(leaf, jax.Array) or leaf.is_fully_addressable:
            return jax.device_get(leaf)
        if leaf.is_fully_replicated:
            return np.asarray(leaf.addressable_data(0))
        return multihost_utils.process_allgather(leaf, tiled=True)

    return jax.tree.map(get, tree)
