"""What ``l2o benchmark`` writes: a table, ``benchmark.json``, ``report.md``, one loss-curve plot
per task and a summary plot of the speedups."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from l2o.benchmark import BenchmarkResult, TaskResult
from l2o.benchmark_metrics import smoothed
from l2o.io import atomic_write, write_json
from l2o.report import save_figure


def to_json(result: BenchmarkResult, command: str | None = None) -> dict:
    """Per task ``speedup`` and ``normalized_final_loss`` (mean over seeds, and per seed), and
    overall ``iqm_speedup`` with ``iqm_speedup_ci95``; the same for Adam at 1e-3."""
    speedup, loss = result.aggregate("speedup"), result.aggregate("normalized_final_loss")
    adam_speedup = result.aggregate("adam_default_speedup")
    adam_loss = result.aggregate("adam_default_normalized_final_loss")
    return {
        "optimizer": result.optimizer,
        "optimizer_identity": result.identity,
        "settings": dataclasses.asdict(result.settings) | {"window": result.settings.smoothing},
        "iqm_speedup": speedup["iqm"], "iqm_speedup_ci95": speedup["ci95"],
        "iqm_normalized_final_loss": loss["iqm"], "iqm_normalized_final_loss_ci95": loss["ci95"],
        "adam_1e-3": {"iqm_speedup": adam_speedup["iqm"], "iqm_speedup_ci95": adam_speedup["ci95"],
                      "iqm_normalized_final_loss": adam_loss["iqm"],
                      "iqm_normalized_final_loss_ci95": adam_loss["ci95"]},
        "tasks": {task.name: _task_json(task) for task in result.tasks},
        "command": command,
    }


def _task_json(task: TaskResult) -> dict:
    return {
        "speedup": float(np.mean(task.speedup)), "speedup_per_seed": task.speedup.tolist(),
        "normalized_final_loss": float(np.mean(task.normalized_final_loss)),
        "normalized_final_loss_per_seed": task.normalized_final_loss.tolist(),
        "tuned_adam_learning_rate": task.tuned_learning_rate,
        "adam_1e-3_speedup": float(np.mean(task.adam_default_speedup)),
        "adam_1e-3_normalized_final_loss": float(np.mean(task.adam_default_normalized_final_loss)),
        "diverged_seeds": int(np.sum(~np.isfinite(task.curves[:, -1]))),
    }


def format_table(result: BenchmarkResult) -> str:
    """Per-task speedups and normalized final losses (means over seeds), then the IQMs."""
    lines = [f"{'task':<42} {'speedup':>8} {'norm. loss':>10} {'Adam 1e-3':>10} {'tuned lr':>9}"]
    for task in result.tasks:
        lines.append(f"{task.name:<42} {np.mean(task.speedup):>8.2f} {np.mean(task.normalized_final_loss):>10.3f} "
                     f"{np.mean(task.adam_default_speedup):>10.2f} {task.tuned_learning_rate:>9.0e}")
    for label, field in ((result.optimizer, "speedup"), ("Adam 1e-3", "adam_default_speedup")):
        summary = result.aggregate(field)
        lines.append(f"IQM speedup over tuned Adam, {label}: {summary['iqm']:.2f} "
                     f"[{summary['ci95'][0]:.2f}, {summary['ci95'][1]:.2f}] (95% stratified bootstrap)")
    return "\n".join(lines)


def _plot_task(task: TaskResult, label: str, window: int, path: Path) -> None:
    from matplotlib.figure import Figure  # no pyplot: the user's backend is left alone

    fig = Figure(figsize=(6, 4), dpi=110)
    ax = fig.add_subplot()
    steps = task.curves.shape[1] - 1
    runs = ((label, task.curves), (f"tuned Adam ({task.tuned_learning_rate:.0e})", task.tuned_adam[:, : steps + 1]),
            ("Adam 1e-3", task.adam_default))
    for name, curves in runs:
        ax.plot(smoothed(np.mean(curves, axis=0), window), label=name)
    ax.set(title=task.name, xlabel="step", ylabel="training loss (smoothed mean over seeds)", yscale="log")
    ax.legend()
    save_figure(fig, path)


def _plot_summary(result: BenchmarkResult, path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 0.4 * len(result.tasks) + 1.5), dpi=110)
    ax = fig.add_subplot()
    names = [task.name for task in result.tasks]
    ax.barh(names, [np.mean(task.speedup) for task in result.tasks], color="tab:blue", label=result.optimizer)
    ax.scatter([np.mean(task.adam_default_speedup) for task in result.tasks], names, color="tab:orange",
               zorder=3, label="Adam 1e-3")
    ax.axvline(1.0, color="black", linewidth=1)
    ax.axvline(result.aggregate("speedup")["iqm"], color="tab:blue", linestyle="--", label="IQM")
    ax.set(xlabel="speedup over tuned Adam (mean over seeds)")
    ax.legend(loc="lower right")
    save_figure(fig, path)


def write_report(result: BenchmarkResult, out: str | Path, command: str | None = None) -> Path:
    """Writes ``benchmark.json``, ``report.md``, ``speedups.png`` and ``curves-TASK.png`` to ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "benchmark.json", to_json(result, command))
    for task in result.tasks:
        _plot_task(task, result.optimizer, result.settings.smoothing, out / f"curves-{task.name}.png")
    _plot_summary(result, out / "speedups.png")
    settings = result.settings
    text = (f"# Benchmark of {result.optimizer}\n\n"
            f"{settings.num_steps} steps, {settings.seeds} seeds per task, speedup over Adam tuned on 15 "
            f"half-decade learning rates (capped at {settings.reference_multiple}x), losses smoothed over "
            f"{settings.smoothing} steps.\n\n```\n{format_table(result)}\n```\n\n![speedups](speedups.png)\n")
    if command:
        text += f"\nCommand: `{command}`\n"
    atomic_write(out / "report.md", text)
    return out
