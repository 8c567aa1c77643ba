"""Writes notebooks/*.ipynb from the cell sources below (unexecuted; the tests execute them).

Keeping the sources here makes notebook diffs reviewable; rerun after editing:
    .venv/bin/python tools/make_notebooks.py
"""
import os

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "notebooks")

EXPLORE = [
    new_markdown_cell("""# 01 — Explore the interaction log

What a multi-task model will learn from: the synthetic log's label rates, how the responses depend
on each other (like and purchase only happen after a click), and TFDV statistics of the joined
examples. Point `MTREC_LOG_DIR` at your own log (events, items, users) to look at it instead."""),
    new_code_cell("""import os
import mtrec  # Keras 2 before TensorFlow
import numpy as np
import pandas as pd
import matplotlib.pyplot as plt

WORK = os.path.abspath(os.environ.get("MTREC_NOTEBOOK_DIR", "../work/notebooks"))
IMPRESSIONS = int(os.environ.get("MTREC_NOTEBOOK_IMPRESSIONS", "50000"))
LOG_DIR = os.environ.get("MTREC_LOG_DIR", "")"""),
    new_markdown_cell("## The log: generate it (or use yours) and join it into one example per impression"),
    new_code_cell("""import apache_beam as beam
from mtrec.components import log_example_gen
from mtrec.data import synthetic

if not LOG_DIR:
    LOG_DIR = os.path.join(WORK, f"synthetic-{IMPRESSIONS}")
    if not os.path.exists(os.path.join(LOG_DIR, "oracle.csv")):
        synthetic.generate(LOG_DIR, synthetic.SyntheticLogSpec(impressions=IMPRESSIONS, days=4, seed=0))
examples_dir = os.path.join(WORK, "examples")
pipeline = beam.Pipeline(argv=["--direct_running_mode=in_memory"])
log_example_gen.build_ingestion(pipeline, LOG_DIR, "jsonl", "time", 1, 20, examples_dir, os.path.join(WORK, "dead"))
result = pipeline.run(); result.wait_until_finish()
counts = log_example_gen.summarize_counts(log_example_gen.read_counters(result))
counts"""),
    new_code_cell("""from mtrec.reporting.oracle import read_split

LABELS = ["click", "like", "purchase", "dwell"]
FEATURES = ["device", "category", "age_bucket", "position"]
frames = [pd.DataFrame(read_split(examples_dir, split, LABELS + FEATURES)).assign(split=split) for split in ("train", "eval")]
df = pd.concat(frames, ignore_index=True)
for c in FEATURES[:3]:
    df[c] = df[c].map(lambda v: v.decode() if isinstance(v, bytes) else v)
print(len(df), "examples")
df.head()"""),
    new_markdown_cell("## Label rates: over all impressions, and post-click tasks given a click"),
    new_code_cell("""clicked = df[df.click == 1]
rates = pd.DataFrame({
    "rate over impressions": [df.click.mean(), df.like.mean(), df.purchase.mean(), (df.dwell > 0).mean()],
    "rate given click": [np.nan, clicked.like.mean(), clicked.purchase.mean(), (clicked.dwell > 0).mean()],
}, index=["click", "like", "purchase", "dwell > 0"])
assert 0 < rates.loc["click", "rate over impressions"] < 1
rates"""),
    new_code_cell("""fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
df.groupby("position").click.mean().plot(ax=axes[0], marker="o", title="click rate by position")
clicked.groupby("category")[["like", "purchase"]].mean().plot.bar(ax=axes[1], title="like / purchase rate given click, by category")
plt.tight_layout()"""),
    new_markdown_cell("""## Task correlation

Over clicked impressions (where like, purchase and dwell are defined): how much the tasks share
is what a multi-task model can exploit, and what `--task-correlation` of the generator sets."""),
    new_code_cell("""corr = clicked[["like", "purchase", "dwell"]].corr()
fig, ax = plt.subplots(figsize=(4.5, 3.8))
im = ax.imshow(corr.values, vmin=-1, vmax=1, cmap="coolwarm")
ax.set_xticks(range(3), corr.columns); ax.set_yticks(range(3), corr.columns)
for (i, j), v in np.ndenumerate(corr.values):
    ax.text(j, i, f"{v:.2f}", ha="center", va="center")
fig.colorbar(im); ax.set_title("label correlation given click")
corr"""),
    new_markdown_cell("## TFDV statistics of the joined examples (what StatisticsGen computes in the pipeline)"),
    new_code_cell("""import glob
import tensorflow_data_validation as tfdv

stats = tfdv.generate_statistics_from_tfrecord(
    data_location=os.path.join(examples_dir, "Split-train", "*"),
    stats_options=tfdv.StatsOptions(), pipeline_options=beam.options.pipeline_options.PipelineOptions(
        ["--direct_running_mode=in_memory"]))
print(stats.datasets[0].num_examples, "train examples in the statistics")
tfdv.visualize_statistics(stats)"""),
]

RESULTS = [
    new_markdown_cell("""# 02 — Results: architectures, weightings, multi-task against single-task

Reads `bench/accuracy.py`'s JSON (every architecture x weighting, AUC gap to the oracle) and a
run's `run_summary.json` (`mtrec run --baselines`: multi-task against single-task per task, and
the task weights of every epoch)."""),
    new_code_cell("""import json
import os
import numpy as np
import pandas as pd
import matplotlib.pyplot as plt

ACCURACY = os.environ.get("MTREC_ACCURACY_JSON", "../bench/results/accuracy.json")
SUMMARY = os.environ.get("MTREC_RUN_SUMMARY", "../work/run_summary.json")
accuracy = json.load(open(ACCURACY))
summary = json.load(open(SUMMARY))"""),
    new_markdown_cell("## Per-task AUC gap to the oracle, by architecture and weighting (lower is better)"),
    new_code_cell("""rows = []
for r in accuracy["results"]:
    for task, m in r["tasks"].items():
        rows.append({"architecture": r["architecture"], "weighting": r["weighting"], "task": task, **m})
results = pd.DataFrame(rows)
gaps = results.dropna(subset=["gap"]).pivot_table(index=["architecture", "weighting"], columns="task", values="gap")
ax = gaps.plot.barh(figsize=(8, 0.45 * len(gaps) + 1.5), title="oracle AUC - model AUC on the eval split")
ax.axvline(0.01, color="gray", linestyle="--", label="goal 0.01"); ax.legend()
print("best:", accuracy["best"], "goal met:", accuracy["goal_met"])
gaps.style.format("{:.4f}")"""),
    new_markdown_cell("## Multi-task against single-task, per task (positive delta: sharing helped)"),
    new_code_cell("""stl = pd.DataFrame(summary.get("stl", {})).T
if len(stl):
    colors = ["tab:red" if v else "tab:green" for v in stl.negative_transfer.astype(bool)]
    ax = stl.delta.astype(float).plot.bar(color=colors, title="MTL - STL on the gated metric (red: negative transfer)")
    ax.axhline(0, color="black", linewidth=0.8)
stl"""),
    new_markdown_cell("## Task weights over epochs (of the run), and where each weighting ends"),
    new_code_cell("""weights = pd.DataFrame(summary.get("task_weights", []))
fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
if len(weights):
    weights.plot(ax=axes[0], marker="o", title=f"task weights per epoch ({summary.get('training', {}).get('weighting')})")
    axes[0].set_xlabel("epoch")
final = pd.DataFrame([{"config": f"{r['architecture']}/{r['weighting']}", **r["task_weights"]} for r in accuracy["results"]]).set_index("config")
final.plot.bar(ax=axes[1], title="task weights in the last epoch")
plt.tight_layout()
final"""),
]


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, cells in (("01_explore_logs.ipynb", EXPLORE), ("02_results.ipynb", RESULTS)):
        notebook = new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                                       "language": "python"}})
        nbformat.write(notebook, os.path.join(OUT, name))
        print("wrote", os.path.join(OUT, name))


if __name__ == "__main__":
    main()
