"""The daily loop, cold start against warm start, over consecutive days of a daily synthetic log.

    python bench/continuous_training.py --out bench/results/continuous_training.json
        [--days 7] [--impressions-per-day 10000] [--window-days 3] [--work /tmp/mtrec-ct]

Generates a daily log (`mtrec generate-logs --layout daily`: new items each day, tastes drifting)
and runs `mtrec run --span DAY` for each day twice, in two work dirs: with `training.warm_start`
off (every day from scratch) and on (from the latest model blessed on an earlier day). Per day and
mode: epochs and training seconds to early stopping (the Keras fit, and the Trainer component),
each task's eval AUC and its gap to the oracle, blessed, features the drift check found drifting
(reported, not gating here). Both modes train on the same window and
are measured on the same day's eval split. Writes JSON and a PNG of the days beside it. The goal:
from the second day on, warm start at least the cold model's AUC on every task in at most half
its training time. No text features (the TextEmbedder is the same in both modes).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import mtrec  # noqa: F401  (Keras 2 before TensorFlow)
import matplotlib

from mtrec.components import spans
from mtrec.config import PipelineConfig
from mtrec.data import synthetic
from mtrec.pipeline import runner

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

MODES = ("cold", "warm")


def day_config(logs: str, day: str, window_days: int, warm: bool) -> PipelineConfig:
    # The drift gate reports but does not stop: a day it would stop (a new item taking a third of
    # the impressions moves the category mix past 0.1) still trains, so every day is compared.
    return PipelineConfig.from_dict({"data": {"source": "events", "path": logs, "span": day, "split": "hash",
                                              "window_days": window_days},
                                     "training": {"warm_start": warm}, "drift": {"gate": False}})


def row(summary: dict) -> dict:
    training = summary.get("training") or {}
    return {"epochs": training.get("epochs"), "fit_seconds": training.get("fit_seconds"),
            "trainer_seconds": summary["stage_seconds"].get("Trainer"),
            "warm_start": bool((training.get("warm_start") or {}).get("warm_start")),
            "blessed": summary["blessed"], "window": summary.get("window"),
            "auc": {t: m["auc"] for t, m in summary["tasks"].items() if "auc" in m},
            "gap_to_oracle": {t: m["gap_to_oracle"] for t, m in summary["tasks"].items() if "gap_to_oracle" in m},
            "drift": (summary.get("drift") or {}).get("drifted", [])}


def compare(days: list) -> dict:
    """Per day from the second: warm minus cold AUC per task, and warm's share of cold's fit time."""
    out = {}
    for day in days[1:]:
        cold, warm = day["cold"], day["warm"]
        out[day["span"]] = {"auc_warm_minus_cold": {t: round(warm["auc"][t] - cold["auc"][t], 4) for t in cold["auc"]},
                            "fit_time_share": round(warm["fit_seconds"] / cold["fit_seconds"], 3),
                            "met": all(warm["auc"][t] >= cold["auc"][t] for t in cold["auc"])
                            and warm["fit_seconds"] <= 0.5 * cold["fit_seconds"]}
    return out


def plot(result: dict, path: str) -> str:
    days = result["days"]
    labels = [d["span"][5:] for d in days]
    tasks = sorted(days[0]["cold"]["auc"])
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for task, color in zip(tasks, plt.rcParams["axes.prop_cycle"].by_key()["color"]):
        for mode, style in (("cold", "--"), ("warm", "-")):
            axes[0].plot(labels, [d[mode]["auc"][task] for d in days], style, marker="o", color=color,
                         label=f"{task} ({mode})")
    axes[0].set_title("eval AUC by day (dashed: cold start)")
    axes[0].legend(fontsize=7, ncol=2)
    width = 0.38
    xs = range(len(days))
    axes[1].bar([x - width / 2 for x in xs], [d["cold"]["fit_seconds"] for d in days], width, label="cold start")
    axes[1].bar([x + width / 2 for x in xs], [d["warm"]["fit_seconds"] for d in days], width, label="warm start")
    for x, d in zip(xs, days):
        for mode, dx in (("cold", -width / 2), ("warm", width / 2)):
            axes[1].annotate(f"{d[mode]['epochs']}e", (x + dx, d[mode]["fit_seconds"]), ha="center", fontsize=7)
    axes[1].set_xticks(list(xs), labels)
    axes[1].set_title("training seconds to early stopping (epochs)")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--impressions-per-day", type=int, default=10_000)
    parser.add_argument("--window-days", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default="/tmp/mtrec-continuous-training")
    args = parser.parse_args(argv)
    logs = os.path.join(args.work, "logs")
    if not os.path.isdir(logs):
        synthetic.generate(logs, synthetic.SyntheticLogSpec(impressions=args.days * args.impressions_per_day,
                                                            days=args.days, seed=args.seed,
                                                            taste_drift=synthetic.DAILY_TASTE_DRIFT), layout="daily")
    days, started = [], time.time()
    for day in spans.day_folders(logs):
        entry = {"span": day}
        for mode in MODES:
            print(f"[{time.time() - started:6.0f}s] {day} {mode} start ...", file=sys.stderr, flush=True)
            summary = runner.run(day_config(logs, day, args.window_days, mode == "warm"),
                                 os.path.join(args.work, mode), progress=lambda line: None)
            entry[mode] = row(summary)
            print(f"[{time.time() - started:6.0f}s] {day} {mode}: {entry[mode]['epochs']} epochs in "
                  f"{entry[mode]['fit_seconds']}s, AUC {entry[mode]['auc']}", file=sys.stderr, flush=True)
        days.append(entry)
    result = {"days_run": len(days), "impressions_per_day": args.impressions_per_day, "window_days": args.window_days,
              "seed": args.seed, "wall_seconds": round(time.time() - started), "days": days, "comparison": compare(days)}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    result["plot"] = plot(result, os.path.splitext(args.out)[0] + ".png")
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(json.dumps(result["comparison"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
