#!/usr/bin/env python
"""PES meta-training throughput on ``fast_velo`` over three layouts: 1 process x 1 device,
1 process x 2 devices, 2 processes x 1 device (``jax.distributed``, loopback coordinator).

A process's device count and process group are fixed when it starts, so each layout runs in
fresh worker processes. A worker builds the trainer's own compiled meta-step on the
``fast_velo`` preset (AdafacMLP, tensor reparameterization), shards the population over every
device of every process, runs one untimed round (compilation), then times ``--meta-steps``
meta-iterations ``--repeats`` times; process 0 reports the median. The layouts are run in turn
``--rounds`` times (interleaved, so background load hits them alike) and the median over rounds
is reported as inner steps per second (``2 * pairs * truncation`` per meta-iteration).

Usage::

    L2O_DATA_DIR=../shared/data python benchmarks/multi_process_scaling.py [--pairs 8] [--unroll 50]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys

LAYOUTS = {  # name: (processes, devices per process)
    "1 process x 1 device": (1, 1),
    "1 process x 2 devices": (1, 2),
    "2 processes x 1 device": (2, 1),
}


def _worker(args) -> None:
    """One process of a layout: times the meta-step; process 0 prints ``{"seconds": ...}``."""
    if args.num_processes > 1:
        from l2o.distributed import connect

        connect(f"127.0.0.1:{args.port}", args.num_processes, args.process_id)
    import jax
    from harness import median_seconds, meta_steps

    from l2o.meta import MetaTrainer
    from l2o.presets import preset_config

    trainer = MetaTrainer(preset_config("fast_velo", n_samplings=args.pairs, unroll_length=args.unroll))
    progress = trainer.place_on_devices(trainer.initial_progress())
    current = trainer.plan(0)
    step = trainer.meta_step(current.unroll_length, current.horizon)
    run = meta_steps(step, [progress.theta, progress.meta_opt_state, progress.states], args.meta_steps)
    seconds = median_seconds(run, args.repeats)
    if jax.process_index() == 0:
        print(json.dumps({"seconds": seconds, "devices": jax.device_count()}))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _run_layout(processes: int, devices: int, args) -> float:
    """Median seconds of ``args.meta_steps`` meta-iterations in one fresh run of the layout."""
    flags = os.environ.get("XLA_FLAGS", "").replace("--xla_force_host_platform_device_count", "--unused")
    env = {**os.environ, "XLA_FLAGS": f"{flags} --xla_force_host_platform_device_count={devices}"}
    port = _free_port()
    workers = [subprocess.Popen(
        [sys.executable, __file__, "--worker", "--num_processes", str(processes), "--process_id", str(i),
         "--port", str(port), "--pairs", str(args.pairs), "--unroll", str(args.unroll),
         "--meta-steps", str(args.meta_steps), "--repeats", str(args.repeats)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(processes)]
    outputs = [worker.communicate(timeout=1200) for worker in workers]
    if any(worker.returncode for worker in workers):
        raise SystemExit("a worker failed:\n" + "\n".join(err[-3000:] for _, err in outputs))
    report = json.loads(outputs[0][0].strip().splitlines()[-1])
    assert report["devices"] == processes * devices, report
    return report["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=8, help="antithetic pairs (2x inner runs)")
    parser.add_argument("--unroll", type=int, default=50, help="inner steps per truncation")
    parser.add_argument("--meta-steps", dest="meta_steps", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats within a worker")
    parser.add_argument("--rounds", type=int, default=3, help="fresh runs of every layout, in turn")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--num_processes", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--process_id", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return _worker(args)
    from harness import LoadCapture, environment

    seconds = {name: [] for name in LAYOUTS}
    with LoadCapture() as load:
        for _ in range(args.rounds):
            for name, (processes, devices) in LAYOUTS.items():
                seconds[name].append(_run_layout(processes, devices, args))
    inner_steps = 2 * args.pairs * args.unroll * args.meta_steps
    rates = {name: inner_steps / statistics.median(values) for name, values in seconds.items()}
    base = rates["1 process x 1 device"]
    print(f"PES on fast_velo + tensor reparameterization, AdafacMLP, {args.pairs} pairs, truncation {args.unroll}; "
          f"median of {args.rounds} runs x {args.repeats} repeats x {args.meta_steps} meta-iterations; "
          f"{load.describe()}")
    for name, rate in rates.items():
        print(f"  {name:<24} {rate:>10,.0f} inner steps/s  {rate / base:5.2f}x")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"inner_steps_per_second": rates, "seconds": seconds, "load": load.as_dict(),
                       "environment": environment(), "settings": vars(args)}, handle, indent=2)


if __name__ == "__main__":
    main()
