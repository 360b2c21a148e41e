"""What every benchmark here shares: interleaved timing with medians, the machine's load, and
the environment the figures were measured in.

On a shared machine, background load comes and goes; timing the candidates of a comparison in
turn within each repeat (interleaving) exposes them to it alike, and the median of the repeats
ignores the odd disturbed one. Ratios of medians measured in one run are what the figures in
docs/BENCHMARKS.md quote.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from typing import Any, Callable

import jax


def interleaved(candidates: dict[str, Callable[[], Any]], repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """Wall seconds of each candidate's call in each of ``repeats`` rounds.

    Every candidate is called ``warmup`` times untimed first (compilation, allocators, threads),
    then once per round, in turn. A call's result is waited for with ``jax.block_until_ready``
    (a no-op for anything but JAX arrays), so asynchronous dispatch is timed to completion.
    """
    for call in candidates.values():
        for _ in range(warmup):
            jax.block_until_ready(call())
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, call in candidates.items():
            start = time.perf_counter()
            jax.block_until_ready(call())
            times[name].append(time.perf_counter() - start)
    return times


def torch_synchronize(device: str) -> None:
    """Waits for torch's queued CUDA work on ``device`` (torch on the CPU runs eagerly: nothing to wait for)."""
    if str(device).startswith("cuda"):
        import torch

        torch.cuda.synchronize(device)


def medians(times: dict[str, list[float]]) -> dict[str, float]:
    """The median of each candidate's times."""
    return {name: statistics.median(values) for name, values in times.items()}


def median_seconds(call: Callable[[], Any], repeats: int, warmup: int = 1) -> float:
    """The median wall seconds of ``call()`` over ``repeats`` calls, after ``warmup`` untimed ones."""
    return statistics.median(interleaved({"call": call}, repeats, warmup)["call"])


class LoadCapture:
    """The 1-minute load average before and after a measurement (``with LoadCapture() as load:``).

    ``as_dict()`` gives ``{"before", "after", "cpu_count"}``; a load near or above the CPU count
    means other work shared the machine, and the figures' absolute values mean little.
    """

    def __enter__(self) -> LoadCapture:
        self.before, self.after = os.getloadavg()[0], None
        return self

    def __exit__(self, *exc_info) -> None:
        self.after = os.getloadavg()[0]

    def as_dict(self) -> dict[str, float | int | None]:
        return {"before": self.before, "after": self.after, "cpu_count": os.cpu_count()}

    def describe(self) -> str:
        after = "" if self.after is None else f", after {self.after:.2f}"
        return f"1-minute load average before {self.before:.2f}{after}; {os.cpu_count()} CPUs"


def environment(torch=None) -> dict[str, Any]:
    """Versions, platform and devices the figures were measured on (``torch``: its module, if used)."""
    env = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "jax": jax.__version__,
        "jax_backend": jax.default_backend(),
        "jax_devices": [str(device) for device in jax.devices()],
    }
    if torch is not None:
        env.update(torch=torch.__version__, torch_threads=torch.get_num_threads())
    return env


def cost_rows(names, medians: dict, failed: dict | None = None) -> list[dict]:
    """The per-step cost table of ``optimizer_step_cost.py`` and ``torch_step_cost.py``, printed
    and returned: for each optimizer name, its median seconds per ``"update"`` and per ``"step"``
    (``medians[name, kind]``) in ms and as multiples of ``"Adam"``'s; ``failed`` names the
    optimizers that could not run, and why."""
    failed = failed or {}
    width = max(len(name) for name in names) + 2
    print(f"{'optimizer':<{width}} {'update ms':>10} {'x Adam':>8} {'train step ms':>14} {'x Adam':>8}")
    rows = []
    for name in names:
        if name in failed:
            rows.append({"optimizer": name, "error": failed[name]})
            print(f"{name:<{width}} {failed[name]}")
            continue
        update, step = medians[name, "update"], medians[name, "step"]
        row = {"optimizer": name, "update_ms": 1e3 * update, "update_ratio": update / medians["Adam", "update"],
               "step_ms": 1e3 * step, "step_ratio": step / medians["Adam", "step"]}
        rows.append(row)
        print(f"{name:<{width}} {row['update_ms']:>10.2f} {row['update_ratio']:>8.2f} "
              f"{row['step_ms']:>14.2f} {row['step_ratio']:>8.2f}")
    return rows


def peak_device_memory() -> int | None:
    """Peak bytes in use on JAX's first device since the process started, where the backend
    reports it (GPUs and TPUs); ``None`` on the CPU."""
    stats = jax.devices()[0].memory_stats() or {}
    return stats.get("peak_bytes_in_use")


def meta_steps(step: Callable, carry: list, count: int) -> Callable[[], Any]:
    """A call that takes ``count`` meta-steps ``step(theta, opt_state, states, key)`` from
    ``carry = [theta, opt_state, states]`` (updated in place, so repeats continue), each with a
    fresh key; for timing with :func:`interleaved`."""
    calls = [0]

    def run():
        theta, opt_state, states = carry
        for _ in range(count):
            calls[0] += 1
            theta, opt_state, states, metrics = step(theta, opt_state, states, jax.random.PRNGKey(calls[0]))
        carry[:] = [theta, opt_state, states]
        return theta, states, metrics

    return run
