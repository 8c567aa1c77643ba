"""A picture of a run: per-task gated metric beside the oracle ceiling, multi-task against
single-task per task, and the dead-letter reasons."""
from __future__ import annotations

from typing import Dict

import matplotlib

from mtrec.task_types import BINARY, REGRESSION, TASK_TYPES

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_summary(summary: Dict, path: str) -> str:
    """Writes a PNG of `summary` (as written to run_summary.json) to `path`; returns `path`."""
    auc, rmse = TASK_TYPES[BINARY].gate_metric, TASK_TYPES[REGRESSION].gate_metric
    binary = {t: m for t, m in summary["tasks"].items() if auc in m}
    regression = {t: m for t, m in summary["tasks"].items() if rmse in m}
    dead = (summary.get("dead_letter") or {}).get("by_reason") or {}
    stl = summary.get("stl") or {}
    panels = [p for p in (binary, regression, stl, dead) if p]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.6), squeeze=False)
    axes = iter(axes[0])
    if binary:
        ax = next(axes)
        names = list(binary)
        xs = range(len(names))
        ax.bar([x - 0.2 for x in xs], [binary[n][auc] for n in names], width=0.4, label="model")
        ax.bar([x + 0.2 for x in xs], [binary[n].get("oracle_auc", float("nan")) for n in names], width=0.4,
               label="oracle", color="lightgray")
        ax.set_xticks(list(xs), names)
        ax.set_ylim(0.5, 1.0)
        ax.set_title("AUC on the eval split")
        ax.legend(loc="upper right")
    if regression:
        ax = next(axes)
        ax.bar(list(regression), [m[rmse] for m in regression.values()], color="tab:orange")
        ax.set_title("RMSE on the eval split")
    if stl:
        ax = next(axes)
        names = list(stl)
        ax.bar(names, [stl[n]["delta"] for n in names],
               color=["tab:red" if stl[n]["negative_transfer"] else "tab:green" for n in names])
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_title("multi-task minus single-task\n(gated metric; red: negative transfer)")
    if dead:
        ax = next(axes)
        ax.barh(list(dead), list(dead.values()), color="tab:red")
        ax.set_title(f"dead-lettered lines ({sum(dead.values())})")
    verdict = "blessed and pushed" if summary.get("pushed_model") else ("blessed" if summary.get("blessed") else "NOT blessed")
    fig.suptitle(f"{summary.get('pipeline', 'mtrec')}: {verdict}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
