#!/usr/bin/env python
"""The markdown table of the JSON files ``accelerator.sh`` wrote into a folder.

Usage::

    python benchmarks/accelerator_table.py OUT_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _mib(value) -> str:
    return "" if value is None else f"{value / 2**20:,.0f} MiB"


def rows(folder: Path) -> list[str]:
    """Markdown lines: one table of figures, then the machine."""
    lines = ["| figure | value | ratio | peak device memory |", "|---|---:|---:|---:|"]
    environment = None
    equivalence = folder / "torch_equivalence.json"
    if equivalence.is_file():
        report = json.loads(equivalence.read_text())
        devices = sorted({result["device"] for result in report["check"]})
        lines.append(f"| PyTorch reference on {', '.join(devices)} computes what l2o computes (torch_equivalence.py) | "
                     f"{'passed' if report['passed'] else 'FAILED'} | | |")
    meta = folder / "meta_train.json"
    if meta.is_file():
        report = json.loads(meta.read_text())
        environment = report["environment"]
        for result in report["results"]:
            torch_device = environment.get("torch_device", "cpu")
            ratio = (f"{result['jax_over_torch']:.2f}x PyTorch eager on {torch_device}"
                     if "jax_over_torch" in result else "")
            lines.append(f"| DM meta-training, {result['shape']} (population {result['population']}), inner steps/s | "
                         f"{result['jax']['inner_steps_per_s']:,.0f} | {ratio} | |")
    pes = folder / "pes_fast_velo.json"
    if pes.is_file():
        report = json.loads(pes.read_text())
        for name, rate in report["inner_steps_per_s"].items():
            lines.append(f"| PES, {report['args']['pairs']} pairs x truncation {report['args']['unroll']}, "
                         f"{name}, inner steps/s | {rate:,.0f} | | |")
    for path in sorted(folder.glob("step_cost_*.json")) + sorted(folder.glob("torch_step_cost.json")):
        report = json.loads(path.read_text())
        framework = "PyTorch" if path.stem.startswith("torch") else "JAX"
        for row in report["rows"]:
            where = f"{framework}, {report['parameters']:,} parameters, {row['optimizer']}"
            if "error" in row:
                lines.append(f"| {where} | {row['error']} | | |")
                continue
            lines.append(f"| {where}: update ms | {row['update_ms']:.2f} | {row['update_ratio']:.2f}x Adam | "
                         f"{_mib(report.get('peak_device_memory_bytes'))} |")
        environment = environment or report["environment"]
    if environment:
        lines += ["", "Machine: " + ", ".join(f"{key} {value}" for key, value in environment.items())]
    return lines


if __name__ == "__main__":
    print("\n".join(rows(Path(sys.argv[1]))))
