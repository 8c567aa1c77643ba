"""The run history of a work dir: `history.jsonl`, one line per `mtrec run`, what a daily loop
looks back on (`mtrec history` prints it and plots each task's metric over the spans).

A line: `span`, `warm_start` (the Trainer started from a blessed model), `tasks` (per-task
metrics as in the run summary), `blessed`, `pushed_model`, `drift` (features found drifting),
and the run's time, training epochs and seconds, drift distances and label rates.
"""
from __future__ import annotations

import json
import os
import time
from typing import Dict, List

import matplotlib

from mtrec.config import PipelineConfig
from mtrec.task_types import BINARY, REGRESSION, TASK_TYPES

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HISTORY_FILE = "history.jsonl"


def line(config: PipelineConfig, summary: Dict) -> Dict:
    """The history line of a finished run."""
    training = summary.get("training") or {}
    drift = summary.get("drift") or {}
    return {"run_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "span": config.data.span or None,
            "window": summary.get("window"), "warm_start": bool((training.get("warm_start") or {}).get("warm_start")),
            "tasks": summary.get("tasks", {}), "blessed": summary.get("blessed", False),
            "pushed_model": summary.get("pushed_model"), "drift": drift.get("drifted", []),
            "drift_distances": {r["feature"]: r["distance"] for r in drift.get("measurements", [])},
            "label_rates": summary.get("label_rates"), "epochs": training.get("epochs"),
            "fit_seconds": training.get("fit_seconds"), "wall_time_s": summary.get("wall_time_s")}


def stopped(config: PipelineConfig, error, wall_time_s: float) -> Dict:
    """The history line of a run its data stopped before Transform (`DataAnomalyError`)."""
    measured = getattr(error, "drift", []) or []
    return {"run_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "span": config.data.span or None,
            "warm_start": False, "tasks": {}, "blessed": False, "pushed_model": None,
            "drift": [r["feature"] for r in measured if r["drifted"]],
            "drift_distances": {r["feature"]: r["distance"] for r in measured},
            "stopped": str(error), "wall_time_s": wall_time_s}


def append(work_dir: str, entry: Dict) -> None:
    with open(os.path.join(work_dir, HISTORY_FILE), "a") as f:
        f.write(json.dumps(entry, sort_keys=False) + "\n")


def read(work_dir: str) -> List[Dict]:
    path = os.path.join(work_dir, HISTORY_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no history yet (`mtrec run --work-dir {work_dir}` writes it)")
    with open(path) as f:
        return [json.loads(text) for text in f if text.strip()]


def _gated(metrics: Dict):
    kind = next((TASK_TYPES[k] for k in (BINARY, REGRESSION) if TASK_TYPES[k].gate_metric in metrics), None)
    return metrics.get(kind.gate_metric) if kind else None


def table(entries: List[Dict]) -> str:
    """One row per run: span, warm start, each task's gated metric, blessed, drift."""
    tasks = sorted({t for e in entries for t, m in e["tasks"].items() if _gated(m) is not None})
    header = f"{'span':<12} {'warm':<5} " + " ".join(f"{t[:10]:>10}" for t in tasks) + "  blessed  drift"
    rows = [header]
    for e in entries:
        cells = " ".join(f"{_gated(e['tasks'][t]):>10.4f}" if t in e["tasks"] and _gated(e["tasks"][t]) is not None
                         else f"{'-':>10}" for t in tasks)
        note = ", ".join(e["drift"]) or ("stopped" if e.get("stopped") else "")
        rows.append(f"{e['span'] or '-':<12} {'yes' if e['warm_start'] else 'no':<5} {cells}  "
                    f"{'yes' if e['blessed'] else 'no':<7}  {note}")
    return "\n".join(rows)


def plot(entries: List[Dict], path: str) -> str:
    """Each task's gated metric over the runs (by span where there is one); returns `path`."""
    tasks = sorted({t for e in entries for t, m in e["tasks"].items() if _gated(m) is not None})
    binary = [t for t in tasks if any(TASK_TYPES[BINARY].gate_metric in e["tasks"].get(t, {}) for e in entries)]
    panels = [p for p in (binary, [t for t in tasks if t not in binary]) if p]
    fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(5.5 * max(1, len(panels)), 3.6), squeeze=False)
    labels = [e["span"] or str(i + 1) for i, e in enumerate(entries)]
    for ax, names in zip(axes[0], panels):
        for name in names:
            ax.plot(labels, [_gated(e["tasks"][name]) if name in e["tasks"] else float("nan") for e in entries],
                    marker="o", label=name)
        ax.set_title("AUC by run" if names is binary else "RMSE by run")
        ax.tick_params(axis="x", rotation=45)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
