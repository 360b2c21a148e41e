"""Multi-process meta-training on ``jax.distributed`` (:mod:`l2o.distributed`), with two `l2o`
processes on this machine (loopback coordinator, one CPU device each, collectives over gloo):
the population sharded over both gives the meta-gradients and final meta-parameters of a single
process running the whole population (the same configuration, trained in the test's process);
killing one process ends the other within a bounded time with a one-line error; `l2o resume`
with the same commands continues to the same end."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from flax import serialization
from helpers.sharding_report import CONFIG

import l2o
from l2o.distributed import connect
from l2o.io import write_json
from l2o.meta import MetaTrainer
from l2o.run_directory import RunDirectory

EPOCHS = 40
# The configuration is tests/test_sharding.py's PES run on small quadratics with a small DM
# (helpers.sharding_report.CONFIG), for more epochs: the multi-process machinery, not the
# arithmetic, is what is tested.
TIMEOUT = 240  # seconds any one command may take here before the test fails (and kills it)


def _env():
    flags = os.environ.get("XLA_FLAGS", "").replace("--xla_force_host_platform_device_count", "--unused")
    return {**os.environ, "XLA_FLAGS": f"{flags} --xla_force_host_platform_device_count=1"}


def _l2o(argv):
    return subprocess.Popen([sys.executable, "-m", "l2o", *argv], env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _processes(argv, port):
    return [_l2o([*argv, "--coordinator_address", f"127.0.0.1:{port}", "--num_processes", "2", "--process_id", str(i)])
            for i in range(2)]


def _finish(process):
    try:
        out, err = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        pytest.fail(f"a process did not end within {TIMEOUT} s: {err[-2000:]}")
    return process.returncode, out, err


def _metrics(run):
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{key: value for key, value in line.items() if key != "seconds"} for line in lines]


def _theta(run):
    return serialization.msgpack_restore((run / "last" / "theta.msgpack").read_bytes())


def _assert_close(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for key in x:
            np.testing.assert_allclose(x[key], y[key], rtol=1e-4, atol=1e-7, err_msg=key)


def test_two_processes_train_as_one_survive_a_death_and_resume(tmp_path):
    write_json(tmp_path / "config.json", CONFIG.to_dict())
    port = _free_port()
    first = _processes(["train", str(tmp_path / "config.json"), f"num_epochs={EPOCHS}", "evaluation_period=20",
                        "--save_path", str(tmp_path / "multi")], port)
    checkpoints = tmp_path / "multi" / "checkpoints"
    deadline = time.monotonic() + TIMEOUT
    while not list(checkpoints.glob("epoch-*.msgpack")) and first[1].poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    # Freeze process 1 first: process 0 then cannot pass its next collective, so the run cannot
    # end before the kill however fast its epochs are; it must be mid-run (last checkpoint < EPOCHS).
    first[1].send_signal(signal.SIGSTOP)
    written = max(int(path.stem.split("-")[1]) for path in checkpoints.glob("epoch-*.msgpack"))
    assert first[1].poll() is None and written < EPOCHS - 1, f"the run got to epoch {written} before the kill"
    first[1].send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    code, _, err = _finish(first[0])
    assert time.monotonic() - killed_at < 60
    last_line = err.strip().splitlines()[-1]
    assert code == 2 and last_line.startswith("l2o: error: lost contact"), err[-2000:]
    first[1].communicate()

    resumed = _processes(["resume", str(tmp_path / "multi")], _free_port())
    results = [_finish(process) for process in resumed]
    assert [code for code, _, _ in results] == [0, 0], results[0][2][-2000:] + results[1][2][-2000:]
    assert "trained DM" in results[0][1] and "trained DM" not in results[1][1]  # process 0 reports

    # The same configuration in this process, on its one device, the whole population here.
    assert jax.process_count() == 1 and jax.device_count() == 1
    MetaTrainer(RunDirectory(tmp_path / "multi").read_config(), tmp_path / "single").train(progress=False)
    multi, alone = _metrics(tmp_path / "multi"), _metrics(tmp_path / "single")
    assert len(alone) == EPOCHS + EPOCHS // 20 + 1  # a log line per epoch, validations at 0, 20, 40
    _assert_close(multi, alone)  # meta-losses and meta-gradient norms of every epoch, validations
    for a, b in zip(*(jax.tree.leaves(_theta(run)) for run in (tmp_path / "multi", tmp_path / "single"))):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("address, processes, process_id, message", [
    ("127.0.0.1:1234", 2, None, "--process_id missing"),
    ("localhost", 2, 0, "must be HOST:PORT"),
    ("127.0.0.1:1234", 0, 0, "--num_processes must be at least 1"),
    ("127.0.0.1:1234", 2, 2, r"--process_id must be in 0\.\.1"),
])
def test_a_wrong_launch_is_a_one_line_error(address, processes, process_id, message):
    with pytest.raises(l2o.L2OError, match=message):
        connect(address, processes, process_id)


def test_a_single_launcher_task_is_a_single_process(monkeypatch):
    """Under SLURM or Open MPI with one task, nothing connects (no coordinator, no port)."""
    for name in ("JAX_COORDINATOR_ADDRESS", "SLURM_STEP_NUM_TASKS", "OMPI_COMM_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SLURM_JOB_ID", "12345")
    monkeypatch.setenv("SLURM_NTASKS", "1")
    assert connect() is False
