"""Reports of an evaluation: a printed table, ``results.json``, ``report.md`` and ``loss.png``."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from l2o.evaluate import Evaluation, OptimizerResult
from l2o.io import atomic_path, atomic_write, write_json
from l2o.metrics import log10_mean, mean_log10

QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


def bootstrap_interval(
    final: np.ndarray, statistic, num_resamples: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """Percentile-bootstrap 95% interval of ``statistic(final)`` over test instances.

    ``final`` has the instances on axis 0; with more axes (e.g. ``(N, 2)``: two optimizers'
    losses on the same instances) whole rows are resampled, which gives a paired interval.
    """
    final = np.asarray(final, np.float64)
    if not np.all(np.isfinite(final)):
        return math.inf, math.inf
    rng = np.random.default_rng(seed)
    index = rng.integers(0, len(final), size=(num_resamples, len(final)))
    values = np.array([statistic(final[row]) for row in index])
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def learning_rate_choice(result: OptimizerResult) -> str:
    """How the learning rate of a result was chosen: ``tuned``, ``fixed`` or ``none`` (learned)."""
    if result.tuning is not None:
        return "tuned"
    return "none" if result.learning_rate is None else "fixed"


def _learning_rate_sentence(evaluation: Evaluation) -> str:
    """What the report says about how each optimizer's learning rate was chosen."""
    by_choice: dict[str, list[str]] = {}
    for name, result in evaluation.results.items():
        by_choice.setdefault(learning_rate_choice(result), []).append(name)
    sentences = []
    if "tuned" in by_choice:
        sentences.append(f"Learning rates of {', '.join(by_choice['tuned'])} were tuned by grid search on "
                         f"{evaluation.num_tuning_instances} other instances (lowest log10 mean final loss).")
    if "fixed" in by_choice:
        rates = ", ".join(f"{name} {evaluation.results[name].learning_rate:.3g}" for name in by_choice["fixed"])
        sentences.append(f"Fixed learning rates, not tuned: {rates}.")
    return " ".join(sentences)


def summarize(name: str, result: OptimizerResult) -> dict:
    """Scalar summary of one optimizer: metrics with 95% bootstrap intervals."""
    final = result.final
    test = {
        key: {"mean": float(np.mean(values)), "ci95": bootstrap_interval(values, np.mean)}
        for key, values in (result.test or {}).items()
    }
    return {
        "optimizer": name,
        "learning_rate": result.learning_rate,
        "learning_rate_choice": learning_rate_choice(result),
        "log10_mean_final": result.log10_mean_final,
        "log10_mean_final_ci95": bootstrap_interval(final, log10_mean),
        "mean_log10_final": result.mean_log10_final,
        "mean_log10_final_ci95": bootstrap_interval(final, mean_log10),
        "mean_final": float(np.mean(final)),
        "median_final": float(np.median(final)),
        "test": test,
    }


def paired_comparisons(evaluation: Evaluation, reference: str = "L2L") -> dict:
    """``reference`` against each other optimizer on the same test instances.

    For each other optimizer: ``difference``, the reference's log10 mean final loss minus the
    other's (negative: the reference is better), its paired-bootstrap 95% interval, and
    ``wins``, the fraction of instances on which the reference's final loss is lower. Empty if
    ``reference`` was not evaluated.
    """
    if reference not in evaluation.results:
        return {}
    ours = evaluation.results[reference].final
    comparisons = {}
    for name, result in evaluation.results.items():
        if name == reference:
            continue
        pairs = np.stack([ours, result.final], axis=1)
        difference = lambda p: log10_mean(p[:, 0]) - log10_mean(p[:, 1])  # noqa: E731
        comparisons[name] = {
            "difference": difference(pairs),
            "difference_ci95": bootstrap_interval(pairs, difference),
            "wins": float(np.mean(ours < result.final)),
        }
    return comparisons


def format_paired(evaluation: Evaluation, reference: str = "L2L") -> str:
    """One line per other optimizer: the paired difference and win rate (empty without L2L)."""
    comparisons = paired_comparisons(evaluation, reference)
    if not comparisons:
        return ""
    lines = [f"{reference} minus each optimizer, log10 mean final loss, same instances (paired 95% CI); "
             f"share of instances where {reference} ends lower:"]
    for name, c in sorted(comparisons.items(), key=lambda item: item[1]["difference"], reverse=True):
        lo, hi = c["difference_ci95"]
        lines.append(f"  vs {name:<9} {c['difference']:+.3f} [{lo:+.3f}, {hi:+.3f}]   wins {c['wins']:.0%}")
    return "\n".join(lines)


def format_table(evaluation: Evaluation) -> str:
    """A fixed-width table, one row per optimizer, best log10 mean final loss first."""
    rows = sorted(
        (summarize(name, r) for name, r in evaluation.results.items()),
        key=lambda row: row["log10_mean_final"],
    )
    test_names = sorted({key for row in rows for key in row["test"]})
    header = f"{'optimizer':<10} {'lr':>9} {'log10 mean final [95% CI]':>30} {'mean log10 final [95% CI]':>32}"
    header += "".join(f" {name + ' [95% CI]':>27}" for name in test_names)
    lines = [header, "-" * len(header)]
    for row in rows:
        lr = "-" if row["learning_rate"] is None else f"{row['learning_rate']:.3g}"
        lo, hi = row["log10_mean_final_ci95"]
        lo2, hi2 = row["mean_log10_final_ci95"]
        line = (
            f"{row['optimizer']:<10} {lr:>9} {row['log10_mean_final']:>9.3f} [{lo:7.3f}, {hi:7.3f}]"
            f"      {row['mean_log10_final']:>9.3f} [{lo2:7.3f}, {hi2:7.3f}]"
        )
        for name in test_names:
            metric = row["test"].get(name)
            line += " " + (f"{'-':>27}" if metric is None else
                           f"{metric['mean']:>9.4f} [{metric['ci95'][0]:.4f}, {metric['ci95'][1]:.4f}]".rjust(27))
        lines.append(line)
    return "\n".join(lines)


def _curves(losses: np.ndarray) -> dict:
    with np.errstate(invalid="ignore"):
        return {
            "mean": np.mean(losses, axis=0).tolist(),
            **{f"q{int(q * 100)}": np.quantile(losses, q, axis=0).tolist() for q in QUANTILES},
        }


def to_json(evaluation: Evaluation) -> dict:
    """Everything measured: setting, per-optimizer summaries, tuning grids and curves."""
    return {
        "problem": evaluation.problem,
        "num_steps": evaluation.num_steps,
        "num_instances": evaluation.num_instances,
        "num_tuning_instances": evaluation.num_tuning_instances,
        "seed": evaluation.seed,
        "paired_vs_L2L": paired_comparisons(evaluation),
        "optimizers": {
            name: {
                **summarize(name, result),
                "tuning": None if result.tuning is None else {str(k): v for k, v in result.tuning.items()},
                "final_losses": result.final.tolist(),
                "test_metrics": {key: values.tolist() for key, values in (result.test or {}).items()},
                "curves": _curves(result.losses),
            }
            for name, result in evaluation.results.items()
        },
    }


def plot_losses(evaluation: Evaluation, path: Path) -> None:
    """Log-scale loss curves: median line and 25-75% band per optimizer, mean dashed."""
    from matplotlib.figure import Figure  # no pyplot: the user's backend is left alone

    fig = Figure(figsize=(7, 4.5), dpi=120)
    ax = fig.subplots()
    steps = np.arange(evaluation.num_steps + 1)
    for name, result in evaluation.results.items():
        losses = np.where(np.isfinite(result.losses), result.losses, np.nan)
        low, median, high = np.nanquantile(losses, [0.25, 0.5, 0.75], axis=0)
        (line,) = ax.plot(steps, median, label=name, linewidth=1.6)
        ax.fill_between(steps, low, high, color=line.get_color(), alpha=0.18, linewidth=0)
        ax.plot(steps, np.nanmean(losses, axis=0), color=line.get_color(), linestyle="--", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title(
        f"{evaluation.problem}: {evaluation.num_instances} test instances "
        "(median, 25-75% band; mean dashed)",
        fontsize=9,
    )
    ax.legend(fontsize=8)
    ax.grid(True, which="major", alpha=0.3)
    save_figure(fig, path)


def save_figure(fig, path: Path) -> None:
    """Lays out a matplotlib ``Figure`` and writes it to ``path`` as PNG, atomically, cropped to
    everything drawn (a legend above the axes included)."""
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight")


def write_report(evaluation: Evaluation, out: str | Path, command: str | None = None) -> Path:
    """Writes ``results.json``, ``report.md`` and ``loss.png`` into ``out``; returns ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = to_json(evaluation)
    if command:
        data["command"] = command
    write_json(out / "results.json", data, indent=1)
    plot_losses(evaluation, out / "loss.png")
    lines = [
        f"# Evaluation on `{evaluation.problem}`",
        "",
        f"{evaluation.num_instances} test instances, {evaluation.num_steps} steps, seed {evaluation.seed}. "
        "Final loss: the training loss at the last step. "
        f"{_learning_rate_sentence(evaluation)} Intervals: 95% bootstrap over test instances.",
        "",
    ]
    if command:
        lines += ["Command:", "", f"    {command}", ""]
    paired = format_paired(evaluation)
    lines += ["```", format_table(evaluation) + ("\n\n" + paired if paired else ""), "```", "",
              "![loss curves](loss.png)", ""]
    atomic_write(out / "report.md", "\n".join(lines))
    return out
