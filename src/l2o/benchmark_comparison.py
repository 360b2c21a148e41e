"""Benchmarks of several optimizers side by side (``l2o compare``).

Each input is what ``l2o benchmark`` wrote (``benchmark.json`` in its ``--out`` folder). They are
compared on the tasks that every one of them holds, and each optimizer's IQM and bootstrap
interval is computed again over those tasks from the per-seed values, so that a benchmark
still missing a task, or one run on more tasks, is judged on the same tasks as the others.

Refused, because the numbers would not mean the same thing: benchmarks run with other
settings (budget, seeds, reference multiple, smoothing window), and a task on which tuned
Adam, the reference every speedup is measured against, chose another learning rate.
Adam at its default learning rate is compared as any optimizer is: ``l2o benchmark Adam``.

One optimizer's benchmarks of disjoint tasks, e.g. a task benchmarked later into another
folder, are read as one when their folders are joined with ``+`` (``runs/a+runs/a-more``):
the per-seed values are all the IQM needs, so the result is what one benchmark of all those
tasks gives. Refused: another optimizer (by name, and by the identity of its definition and
weights where both reports hold it), other settings, a task in two of them.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from l2o.benchmark_metrics import iqm, iqm_interval
from l2o.errors import L2OError
from l2o.io import atomic_write, write_json
from l2o.report import save_figure

# The settings two benchmarks must share to be compared.
SETTINGS = ("num_steps", "seeds", "reference_multiple", "window")
METRICS = ("speedup", "normalized_final_loss")
# What a diverged seed's value, written to JSON as null, stands for: no speedup, an infinite loss.
NON_FINITE = {"speedup": 0.0, "normalized_final_loss": float("inf")}


@dataclasses.dataclass(frozen=True)
class StoredBenchmark:
    """One ``benchmark.json``: where it was read, its optimizer's name, settings and tasks."""

    path: Path
    optimizer: str
    settings: dict
    tasks: dict
    identity: str | None = None


def read_benchmark(path: str | Path) -> StoredBenchmark:
    """The benchmark in ``path`` (an ``l2o benchmark --out`` folder, or its ``benchmark.json``);
    a one-line :class:`L2OError` when there is none or it is not one."""
    path = Path(path)
    file = path / "benchmark.json" if path.is_dir() else path
    if not file.is_file():
        raise L2OError(f"{path} holds no benchmark.json; pass the --out folder of an `l2o benchmark` run")
    try:
        data = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise L2OError(f"cannot read {file}: {error}; run `l2o benchmark` again to write it") from None
    try:
        settings = {name: int(data["settings"][name]) for name in SETTINGS}
        tasks = {name: {f"{metric}_per_seed": [NON_FINITE[metric] if v is None else float(v)
                                               for v in task[f"{metric}_per_seed"]] for metric in METRICS}
                 | {"tuned_adam_learning_rate": float(task["tuned_adam_learning_rate"]),
                    "diverged_seeds": int(task["diverged_seeds"])}
                 for name, task in data["tasks"].items()}
        optimizer = str(data["optimizer"])
        identity = data.get("optimizer_identity")  # written since 2026-12-01
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise L2OError(f"{file} is not a report of `l2o benchmark` (bad or missing entry {error}); "
                       "run `l2o benchmark` again to write it") from None
    return StoredBenchmark(path, optimizer, settings, tasks, identity)


def _check_same_settings(first: StoredBenchmark, other: StoredBenchmark) -> None:
    for name in SETTINGS:
        if other.settings[name] != first.settings[name]:
            raise L2OError(f"{other.path} was benchmarked with {name} {other.settings[name]}, {first.path} with "
                           f"{first.settings[name]}; compare benchmarks run with the same settings")


def read_joined(spec: str | Path) -> StoredBenchmark:
    """The benchmark in ``spec``, or, when ``spec`` is not a path but several joined by ``+``,
    those benchmarks of one optimizer read as one (the module docstring says what is refused)."""
    if Path(spec).exists() or "+" not in str(spec):
        return read_benchmark(spec)
    parts = [read_benchmark(part) for part in str(spec).split("+")]
    first, tasks = parts[0], dict(parts[0].tasks)
    identities = {part.identity for part in parts} - {None}  # old reports hold none
    for other in parts[1:]:
        if other.optimizer != first.optimizer or len(identities) > 1:
            raise L2OError(f"{other.path} is a benchmark of {other.optimizer}, {first.path} of {first.optimizer}"
                           f"{' (another definition or weights)' if other.optimizer == first.optimizer else ''}; "
                           "join with + only benchmarks of one optimizer")
        _check_same_settings(first, other)
        both = [task for task in other.tasks if task in tasks]
        if both:
            raise L2OError(f"{', '.join(both)} is in both {first.path} and {other.path}; "
                           "join with + only benchmarks of different tasks")
        tasks |= other.tasks
    identity = next(iter(identities), None)
    return StoredBenchmark(Path(spec), first.optimizer, first.settings, tasks, identity)


@dataclasses.dataclass(frozen=True)
class Comparison:
    """Benchmarks on their common tasks.

    Attributes:
      labels: one per optimizer.
      tasks: the tasks every benchmark holds, in the first benchmark's order.
      left_out: task -> labels of the benchmarks that hold it, for the tasks not in all of them.
      settings: the shared settings (:data:`SETTINGS`).
      speedup, normalized_final_loss: ``(optimizers, tasks, seeds)`` per-seed values.
      tuned_learning_rate: ``(tasks,)`` tuned Adam's rate per task.
      diverged_seeds: ``(optimizers, tasks)``.
    """

    labels: list[str]
    tasks: list[str]
    left_out: dict[str, list[str]]
    settings: dict
    speedup: np.ndarray
    normalized_final_loss: np.ndarray
    tuned_learning_rate: np.ndarray
    diverged_seeds: np.ndarray

    def aggregate(self, metric: str) -> list[dict]:
        """Per optimizer: the IQM of ``metric`` over the common tasks and seeds and its 95%
        stratified bootstrap interval (:mod:`l2o.benchmark_metrics`)."""
        values = getattr(self, metric)
        return [{"iqm": iqm(v), "ci95": list(iqm_interval(v))} for v in values]


def compare(paths: list[str | Path], labels: list[str] | None = None) -> Comparison:
    """The benchmarks in ``paths`` (each a folder, or one optimizer's folders joined by ``+``) on
    their common tasks (the module docstring says what is refused); ``labels`` name the
    optimizers (default: each benchmark's optimizer, or its folder where two share a name)."""
    benchmarks = [read_joined(path) for path in paths]
    if labels is None:
        names = [b.optimizer for b in benchmarks]
        labels = [b.optimizer if names.count(b.optimizer) == 1 else str(b.path) for b in benchmarks]
    elif len(labels) != len(benchmarks):
        raise L2OError(f"{len(labels)} labels for {len(benchmarks)} benchmarks; give one label per benchmark")
    first = benchmarks[0]
    for other in benchmarks[1:]:
        _check_same_settings(first, other)
    tasks = [task for task in first.tasks if all(task in b.tasks for b in benchmarks)]
    if not tasks:
        raise L2OError(f"no task is in every benchmark ({', '.join(map(str, paths))}); "
                       "compare benchmarks of the same tasks")
    every = dict.fromkeys(task for b in benchmarks for task in b.tasks)
    left_out = {task: [label for label, b in zip(labels, benchmarks) if task in b.tasks]
                for task in every if task not in tasks}
    for task in tasks:
        rates = {b.tasks[task]["tuned_adam_learning_rate"] for b in benchmarks}
        if len(rates) > 1:
            raise L2OError(f"{task}: tuned Adam's learning rate differs between the benchmarks "
                           f"({', '.join(f'{rate:g}' for rate in sorted(rates))}), so their speedups are measured "
                           "against different references; benchmark them with the same l2o version")
    per_seed = lambda metric: np.array([[b.tasks[task][f"{metric}_per_seed"] for task in tasks] for b in benchmarks])
    return Comparison(
        labels=list(labels), tasks=tasks, left_out=left_out, settings=first.settings,
        speedup=per_seed("speedup"), normalized_final_loss=per_seed("normalized_final_loss"),
        tuned_learning_rate=np.array([first.tasks[task]["tuned_adam_learning_rate"] for task in tasks]),
        diverged_seeds=np.array([[b.tasks[task]["diverged_seeds"] for task in tasks] for b in benchmarks]),
    )


def format_markdown(comparison: Comparison) -> str:
    """A Markdown table: per task, tuned Adam's rate and each optimizer's mean speedup and
    normalized final loss; then the IQMs with their intervals, diverged seeds, and the tasks
    left out."""
    c = comparison
    header = ["task", "tuned Adam lr"] + [f"{label} {column}" for label in c.labels
                                          for column in ("speedup", "norm. loss")]
    rows = [header, ["---"] + ["---:"] * (len(header) - 1)]
    for t, task in enumerate(c.tasks):
        rows.append([task, f"{c.tuned_learning_rate[t]:.3g}"] + [
            f"{np.mean(values[t]):{spec}}" for o in range(len(c.labels))
            for values, spec in ((c.speedup[o], ".2f"), (c.normalized_final_loss[o], ".3f"))])
    interval = lambda summary: f"{summary['iqm']:.2f} [{summary['ci95'][0]:.2f}, {summary['ci95'][1]:.2f}]"
    rows.append(["**IQM [95% CI]**", ""] + [
        text for speed, loss in zip(c.aggregate("speedup"), c.aggregate("normalized_final_loss"))
        for text in (f"**{interval(speed)}**", interval(loss))])
    rows.append(["diverged seeds", ""] + [text for count in c.diverged_seeds.sum(axis=1)
                                          for text in (str(int(count)), "")])
    lines = ["| " + " | ".join(row) + " |" for row in rows]
    s = c.settings
    count = f"{len(c.tasks)} task{'s' * (len(c.tasks) != 1)}"
    lines += ["", f"{count}, {s['num_steps']} steps, {s['seeds']} seeds per task; speedup over tuned Adam (capped "
              f"at {s['reference_multiple']}x), final losses over tuned Adam's (smoothed over {s['window']} steps); "
              "IQM over tasks x seeds with a 95% stratified bootstrap interval."]
    if c.left_out:
        lines.append("Left out (not in every benchmark): " + "; ".join(
            f"{task} (only {', '.join(labels)})" for task, labels in c.left_out.items()) + ".")
    return "\n".join(lines)


def to_json(comparison: Comparison, command: str | None = None) -> dict:
    """Per optimizer its IQMs and intervals over the common tasks, and per task its mean metrics."""
    c = comparison
    speed, loss = c.aggregate("speedup"), c.aggregate("normalized_final_loss")
    return {
        "settings": c.settings, "tasks": c.tasks, "left_out": c.left_out,
        "optimizers": {label: {
            "iqm_speedup": speed[o]["iqm"], "iqm_speedup_ci95": speed[o]["ci95"],
            "iqm_normalized_final_loss": loss[o]["iqm"], "iqm_normalized_final_loss_ci95": loss[o]["ci95"],
            "tasks": {task: {"speedup": float(np.mean(c.speedup[o, t])),
                             "normalized_final_loss": float(np.mean(c.normalized_final_loss[o, t])),
                             "diverged_seeds": int(c.diverged_seeds[o, t])} for t, task in enumerate(c.tasks)},
        } for o, label in enumerate(c.labels)},
        "command": command,
    }


def plot(comparison: Comparison, path: Path) -> None:
    """Grouped bars of each optimizer's mean speedup per task, its IQM as a dashed line."""
    from matplotlib.figure import Figure  # no pyplot: the user's backend is left alone

    c = comparison
    count = len(c.labels)
    fig = Figure(figsize=(8, 0.25 * count * len(c.tasks) + 2), dpi=110)
    ax = fig.add_subplot()
    height = 0.8 / count
    positions = np.arange(len(c.tasks))
    colors = [f"C{o % 10}" for o in range(count)]
    for o, (label, summary) in enumerate(zip(c.labels, c.aggregate("speedup"))):
        ax.barh(positions + (o - (count - 1) / 2) * height, np.mean(c.speedup[o], axis=1), height,
                color=colors[o], label=f"{label} (IQM {summary['iqm']:.2f})")
        ax.axvline(summary["iqm"], color=colors[o], linestyle="--", linewidth=1)
    ax.axvline(1.0, color="black", linewidth=1)
    ax.set_yticks(positions, c.tasks)
    ax.invert_yaxis()
    ax.set(xlabel="speedup over tuned Adam (mean over seeds; dashed: IQM)",
           xlim=(0, 1.02 * c.settings["reference_multiple"]))
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=min(count, 2), fontsize="small", frameon=False)
    save_figure(fig, path)


def write_comparison(comparison: Comparison, out: str | Path, command: str | None = None) -> Path:
    """Writes ``comparison.md``, ``comparison.json`` and ``comparison.png`` into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "comparison.json", to_json(comparison, command))
    plot(comparison, out / "comparison.png")
    text = f"# Benchmarks compared\n\n{format_markdown(comparison)}\n\n![speedups](comparison.png)\n"
    if command:
        text += f"\nCommand: `{command}`\n"
    atomic_write(out / "comparison.md", text)
    return out
