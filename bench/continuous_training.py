"""The daily loop, cold start against warm start, over consecutive days of a daily synthetic log.

    python bench/continuous_training.py --out bench/results/continuous_training.json
        [--days 7] [--impressions-per-day 10000] [--window-days 3] [--work /tmp/mtrec-ct]
        [--modes cold,warm,warm_patience,warm_two,warm_newest] [--training-seeds 0,1,2]

Generates a daily log (`mtrec generate-logs --layout daily`: new items each day, tastes drifting)
and runs `mtrec run --span DAY` for each day once per mode (`--modes`) and training seed
(`--training-seeds`), each mode and seed in its own work dir:
`cold` with `training.warm_start` off (every day from scratch), `warm` with it on (from the latest
model blessed on an earlier day, one pass over the whole window: `training.warm_start_epochs` 1),
`warm_patience` (warm, epochs until early stopping: `warm_start_epochs` 0), `warm_two` (warm, two
passes, early stopping keeping the better: `warm_start_epochs` 2) and `warm_newest` (warm, one pass
over the newest day only: `training.warm_start_spans` 1). Per day and mode: epochs
and training seconds (the Keras fit, and the Trainer component), each task's eval AUC and its gap to
the oracle, blessed, features the drift check found drifting (reported, not gating here). Every
mode sees the same window (Transform's vocabularies, early stopping on its eval split) and is
measured on the same day's eval split. The same logs and seed train the same model, so every mode's
first day is the same model; trainings with other seeds differ by up to 0.05 AUC (purchase, day 1
at 50,000 impressions), so several seeds tell a deficit from that noise (per day and task: the
mean, lowest and highest difference). Writes JSON and a PNG of the days beside it. The goal:
from the second day on, warm start at least the cold model's AUC on every task in at most half
its training time. No text features (the TextEmbedder is the same in every mode).
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

# Each mode's training config (the module docstring says what each does).
MODES = {"cold": {"warm_start": False}, "warm": {"warm_start": True},
         "warm_patience": {"warm_start": True, "warm_start_epochs": 0},
         "warm_two": {"warm_start": True, "warm_start_epochs": 2},
         "warm_newest": {"warm_start": True, "warm_start_spans": 1}}


def day_config(logs: str, day: str, window_days: int, mode: str, seed: int = 0) -> PipelineConfig:
    # The drift gate reports but does not stop: a day it would stop (a new item taking a third of
    # the impressions moves the category mix past 0.1) still trains, so every day is compared.
    return PipelineConfig.from_dict({"data": {"source": "events", "path": logs, "span": day, "split": "hash",
                                              "window_days": window_days},
                                     "training": {**MODES[mode], "seed": seed}, "drift": {"gate": False}})


def row(summary: dict) -> dict:
    training = summary.get("training") or {}
    return {"epochs": training.get("epochs"), "fit_seconds": training.get("fit_seconds"),
            "trainer_seconds": summary["stage_seconds"].get("Trainer"),
            "warm_start": bool((training.get("warm_start") or {}).get("warm_start")),
            "newest_spans_only": bool((training.get("warm_start") or {}).get("newest_spans_only")),
            "blessed": summary["blessed"], "window": summary.get("window"),
            "auc": {t: m["auc"] for t, m in summary["tasks"].items() if "auc" in m},
            "gap_to_oracle": {t: m["gap_to_oracle"] for t, m in summary["tasks"].items() if "gap_to_oracle" in m},
            "drift": (summary.get("drift") or {}).get("drifted", [])}


def compare(days: list, mode: str) -> dict:
    """Per day from the second: `mode` minus cold AUC per task, and its share of cold's fit time."""
    out = {}
    for day in days[1:]:
        cold, warm = day["cold"], day[mode]
        out[day["span"]] = {"auc_warm_minus_cold": {t: round(warm["auc"][t] - cold["auc"][t], 4) for t in cold["auc"]},
                            "fit_time_share": round(warm["fit_seconds"] / cold["fit_seconds"], 3),
                            "met": all(warm["auc"][t] >= cold["auc"][t] for t in cold["auc"])
                            and warm["fit_seconds"] <= 0.5 * cold["fit_seconds"]}
    return out


def over_seeds(compared: list) -> dict:
    """Per day from the second, over one mode's `compare` of each training seed: its AUC minus
    cold's per task as mean, lowest and highest, the mean share of cold's fit time, and on how
    many seeds the day met the goal."""
    out = {}
    for span in compared[0]:
        per_seed = [c[span] for c in compared]
        differences = {t: [c["auc_warm_minus_cold"][t] for c in per_seed] for t in per_seed[0]["auc_warm_minus_cold"]}
        out[span] = {"auc_warm_minus_cold": {t: {"mean": round(sum(d) / len(d), 4), "min": min(d), "max": max(d)}
                                             for t, d in differences.items()},
                     "fit_time_share": round(sum(c["fit_time_share"] for c in per_seed) / len(per_seed), 3),
                     "seeds_met": sum(c["met"] for c in per_seed), "seeds": len(per_seed)}
    return out


def plot(result: dict, path: str) -> str:
    """Left: each warm mode's eval AUC minus the cold start's, by day and task (the mean over the
    training seeds, bars from the lowest to the highest); right: fit seconds to early stopping
    (the seeds' mean; mean epochs on the bars) against half of the cold start's."""
    runs, modes = list(result["runs"].values()), result["modes"]
    days = runs[0]
    labels = [d["span"][5:] for d in days]
    tasks = sorted(days[0]["cold"]["auc"])
    mean = lambda values: sum(values) / len(values)  # noqa: E731
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for task, color in zip(tasks, plt.rcParams["axes.prop_cycle"].by_key()["color"]):
        for mode, style in zip([m for m in modes if m != "cold"], ("-", ":", "--", "-.")):
            differences = [[run[i][mode]["auc"][task] - run[i]["cold"]["auc"][task] for run in runs]
                           for i in range(len(days))]
            centre = [mean(d) for d in differences]
            axes[0].errorbar(labels, centre, yerr=[[c - min(d) for c, d in zip(centre, differences)],
                                                   [max(d) - c for c, d in zip(centre, differences)]],
                             fmt=style, marker="o", color=color, capsize=2, label=f"{task} ({mode})")
    axes[0].axhline(0, color="grey", linewidth=0.8)
    seeds = f" (mean of {len(runs)} training seeds, lowest to highest)" if len(runs) > 1 else ""
    axes[0].set_title(f"eval AUC minus the cold start's, by day{seeds}", fontsize=9)
    axes[0].legend(fontsize=7, ncol=2)
    width = 0.8 / len(modes)
    xs = range(len(days))
    for i, mode in enumerate(modes):
        offset = (i - (len(modes) - 1) / 2) * width
        seconds = [mean([run[x][mode]["fit_seconds"] for run in runs]) for x in xs]
        axes[1].bar([x + offset for x in xs], seconds, width, label=mode)
        for x, height in zip(xs, seconds):
            epochs = mean([run[x][mode]["epochs"] for run in runs])
            axes[1].annotate(f"{epochs:.3g}e", (x + offset, height), ha="center", fontsize=7)
    half = [mean([run[x]["cold"]["fit_seconds"] for run in runs]) / 2 for x in xs]
    axes[1].hlines(half, [x - 0.45 for x in xs], [x + 0.45 for x in xs], colors="black", linewidth=1,
                   label="half of cold's")
    axes[1].set_xticks(list(xs), labels)
    axes[1].set_title("training seconds to early stopping (epochs)", fontsize=9)
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
    parser.add_argument("--seed", type=int, default=0, help="the synthetic log's")
    parser.add_argument("--training-seeds", default="0",
                        help="comma-separated training.seed values: the whole loop runs once per seed and mode")
    parser.add_argument("--work", default="/tmp/mtrec-continuous-training")
    parser.add_argument("--modes", default="cold,warm", help=f"comma-separated, cold first, of {', '.join(MODES)}")
    args = parser.parse_args(argv)
    modes, seeds = args.modes.split(","), [int(s) for s in args.training_seeds.split(",")]
    if modes[0] != "cold" or not set(modes) <= set(MODES):
        parser.error(f"--modes {args.modes}: cold first, then any of {', '.join(m for m in MODES if m != 'cold')}")
    logs = os.path.join(args.work, "logs")
    if not os.path.isdir(logs):
        synthetic.generate(logs, synthetic.SyntheticLogSpec(impressions=args.days * args.impressions_per_day,
                                                            days=args.days, seed=args.seed,
                                                            taste_drift=synthetic.DAILY_TASTE_DRIFT), layout="daily")
    runs, started = {}, time.time()
    for seed in seeds:
        days = runs[str(seed)] = []
        for day in spans.day_folders(logs):
            entry = {"span": day}
            for mode in modes:
                print(f"[{time.time() - started:6.0f}s] seed {seed} {day} {mode} start ...", file=sys.stderr,
                      flush=True)
                summary = runner.run(day_config(logs, day, args.window_days, mode, seed),
                                     os.path.join(args.work, f"{mode}-seed{seed}"), progress=lambda line: None)
                entry[mode] = row(summary)
                print(f"[{time.time() - started:6.0f}s] seed {seed} {day} {mode}: {entry[mode]['epochs']} epochs in "
                      f"{entry[mode]['fit_seconds']}s, AUC {entry[mode]['auc']}", file=sys.stderr, flush=True)
            days.append(entry)
    by_seed = {seed: {mode: compare(days, mode) for mode in modes[1:]} for seed, days in runs.items()}
    result = {"days_run": len(runs[str(seeds[0])]), "impressions_per_day": args.impressions_per_day,
              "window_days": args.window_days, "seed": args.seed, "training_seeds": seeds, "modes": modes,
              "wall_seconds": round(time.time() - started), "runs": runs,
              "comparison": {mode: over_seeds([c[mode] for c in by_seed.values()]) for mode in modes[1:]},
              "comparison_by_seed": by_seed}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    result["plot"] = plot(result, os.path.splitext(args.out)[0] + ".png")
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(json.dumps(result["comparison"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
