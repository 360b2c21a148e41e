"""Where a meta-training run stands, from its ``metrics.jsonl``: epochs done, its validation
curve and best score, its meta-loss; and the plot of both (what ``l2o progress RUN`` shows).

Safe beside a run that is still training: the metrics file is only read, and the plot is
written atomically next to it.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from l2o.errors import L2OError
from l2o.run_directory import RunDirectory

PLOT_FILE = "training.png"


@dataclasses.dataclass(frozen=True)
class RunProgress:
    """A run's progress.

    Attributes:
      epochs, num_epochs: epochs logged so far, and configured.
      validations: ``(epoch, score)`` of every validation (lower is better), in order.
      meta_losses: ``(epoch, mean meta-loss of the epochs since the last log line)``.
      seconds: wall time recorded by each sitting's last log line, summed over sittings (a
        resumed run's clock restarts).
    """

    epochs: int
    num_epochs: int
    validations: list[tuple[int, float]]
    meta_losses: list[tuple[int, float]]
    seconds: float

    @property
    def best(self) -> tuple[int, float] | None:
        """``(epoch, score)`` of the best validation, or ``None`` before the first."""
        return min(self.validations, key=lambda item: item[1]) if self.validations else None


def read_progress(path: str | Path) -> RunProgress:
    """The progress of the run in ``path`` (an ``l2o train`` ``--save_path``)."""
    run = RunDirectory(path)
    if not run.config.is_file() or not run.metrics.is_file():
        raise L2OError(f"{path} holds no metrics.jsonl and config.json; pass the --save_path of an `l2o train` run")
    try:
        events = [json.loads(line) for line in run.metrics.read_text().splitlines() if line.strip()]
    except ValueError:
        raise L2OError(f"{run.metrics} is corrupted (a line is not JSON); `l2o resume` rewrites it") from None
    logs = [event for event in events if "seconds" in event]
    seconds, previous = 0.0, 0.0
    for event in logs:
        if event["seconds"] < previous:  # a new sitting
            seconds += previous
        previous = event["seconds"]
    return RunProgress(
        epochs=max((event["epoch"] for event in logs), default=0),
        num_epochs=run.read_config().run.num_epochs,
        validations=[(event["epoch"], event["validation"]) for event in events if "validation" in event],
        meta_losses=[(event["epoch"], event["meta_loss"]) for event in logs if "meta_loss" in event],
        seconds=seconds + previous,
    )


def plot_progress(progress: RunProgress, path: Path, title: str) -> None:
    """Validation score (top) and meta-loss (bottom) against the epoch, the best marked."""
    from matplotlib.figure import Figure  # no pyplot: the user's backend is left alone

    from l2o.report import save_figure

    fig = Figure(figsize=(7, 5.5), dpi=120)
    top, bottom = fig.subplots(2, 1, sharex=True)
    if progress.validations:
        epochs, scores = np.array(progress.validations).T
        top.plot(epochs, scores, marker="o", markersize=3)
        best_epoch, best_score = progress.best
        top.plot([best_epoch], [best_score], marker="*", markersize=12, linestyle="none",
                 label=f"best {best_score:.3f} (epoch {best_epoch})")
        top.legend(fontsize=8)
    top.set_ylabel("validation (lower is better)")
    top.set_title(f"{title}: {progress.epochs} of {progress.num_epochs} epochs", fontsize=10)
    if progress.meta_losses:
        epochs, losses = np.array(progress.meta_losses).T
        bottom.plot(epochs, losses, linewidth=0.8)
        if np.all(losses > 0):
            bottom.set_yscale("log")
    bottom.set_ylabel("meta-loss (mean per log line)")
    bottom.set_xlabel("epoch")
    for ax in (top, bottom):
        ax.grid(True, alpha=0.3)
    save_figure(fig, path)
