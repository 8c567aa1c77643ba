"""Accuracy of every architecture x weighting on the synthetic log, as the AUC gap to the oracle.

    python bench/accuracy.py --out bench/results/accuracy.json [--impressions 200000]
    python bench/accuracy.py --out acc.json --config my.yaml --logs my_logs/   # your own logs
    python bench/accuracy.py --out acc.json --config my.yaml --from-run work   # a finished run
    python bench/accuracy.py --out seeds.json --from-run work --architectures mmoe --weightings fixed --seeds 0,1,2
    python bench/accuracy.py --out text.json --from-run work --architectures mmoe --weightings fixed \
        --seeds 0,1,2,3,4 --text with,without      # the text ablation over seeds

Runs the pipeline once with single-task baselines (reused from TFX's cache on a second call; or
takes a finished `mtrec run` work dir as it is, with the `--config` it ran with),
then trains each configuration on the same transformed splits with the Trainer's own `train`
and scores the eval split like the Evaluator (conditional tasks weighted by their `given` label).
Writes JSON (per configuration and task: AUC, oracle AUC, gap; RMSE for regression; epochs and
training seconds; the same on the cold-start slice) and a heatmap PNG beside it. The goal: the best
configuration within 0.01 AUC of the oracle on every binary task. `--text with,without` trains each
configuration also without text features (`PipelineConfig.without_text`, as `--ablate-text` does)
and adds `text_effect`: per task, text's mean change over the seeds in its metric (AUC, or RMSE),
on all eval impressions and on the cold slice, and the share of the no-text cold gap to the oracle
that text closes.
"""
from __future__ import annotations

import argparse
import collections
import dataclasses
import itertools
import json
import os
import sys
import time
from typing import Optional

import mtrec  # noqa: F401  (Keras 2 before TensorFlow)
import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
from sklearn.metrics import roc_auc_score

from mtrec.config import ARCHITECTURES, BINARY, WEIGHTINGS, PipelineConfig, default_synthetic_text
from mtrec.models.multitask import example_weight
from mtrec.pipeline import distribution, runner
from mtrec.pipeline.datasets import dataset, record_accessor
from mtrec.pipeline.training import text_tables, train, vocab_sizes
from mtrec.reporting.summary import latest_run_outputs, trainer_examples
from mtrec.transformed import ITEM_ID

RANKING = [a for a in ARCHITECTURES if a != "two_tower"]


def transformed_dataset(examples: tuple, split: str, tft_output, config: PipelineConfig,
                        shuffle: bool) -> tf.data.Dataset:
    """The split's batches as the Trainer reads them (`training.cache`, id dropout when shuffled)
    from `examples`, (URI, raw) as `trainer_examples` gives them."""
    uri, raw = examples
    return dataset(os.path.join(uri, f"Split-{split}", "*"), record_accessor("mtrec-bench"), tft_output, config,
                   shuffle, raw=raw)


def score(network, eval_data, config: PipelineConfig, trained_items: Optional[int] = None) -> dict:
    """{task: {auc | rmse}} on the eval split; with `trained_items` (the item vocabulary's size),
    also `cold`: the same on impressions of items no training example had (an out-of-vocabulary
    item index), the Evaluator's cold-start slice."""
    predictions, labels = {t.name: [] for t in config.tasks}, collections.defaultdict(list)
    cold = []
    for features, batch_labels in eval_data:
        outputs = network(features, training=False)
        for t in config.tasks:
            predictions[t.name].append(outputs[t.name].numpy()[:, 0])
        for k, v in batch_labels.items():
            labels[k].append(v.numpy()[:, 0])
        if trained_items is not None:
            cold.append(features[ITEM_ID].numpy()[:, 0] >= trained_items)
    labels = {k: np.concatenate(v) for k, v in labels.items()}
    subsets = {"all": slice(None)}
    if trained_items is not None:
        subsets["cold"] = np.concatenate(cold)
    result = {}
    for t in config.tasks:
        p, y = np.concatenate(predictions[t.name]), labels[t.label]
        w = np.asarray(example_weight(t, labels))  # the `given` label, 0 where a label is missing
        for subset, kept in subsets.items():
            metrics = result.setdefault(t.name, {}) if subset == "all" else result[t.name].setdefault(subset, {})
            if t.type == BINARY:
                if len(np.unique(y[kept][w[kept] > 0])) == 2:  # an AUC needs both classes (a small slice may not)
                    metrics["auc"] = float(roc_auc_score(y[kept], p[kept], sample_weight=w[kept]))
            elif np.sum(w[kept]) > 0:
                metrics["rmse"] = float(np.sqrt(np.sum(w[kept] * (y[kept] - p[kept]) ** 2) / np.sum(w[kept])))
    return result


def part_of(task_metrics: dict, part: str) -> dict:
    """A task's metrics on all eval impressions (`all`) or on the cold-start slice (`cold`)."""
    return task_metrics if part == "all" else task_metrics.get("cold", {})


def text_effect(results, oracle_cold) -> dict:
    """{task: {metric, all, cold, cold_gap_closed}}: text's mean change (with - without, over the
    seeds both were trained with) in AUC (RMSE for regression) on all eval impressions and on the
    cold slice, each with its range; the share of the no-text cold gap to the oracle text closes."""
    pairs = collections.defaultdict(dict)
    for r in results:
        pairs[(r["architecture"], r["weighting"], r["seed"])][r["text"]] = r["tasks"]
    pairs = [p for p in pairs.values() if len(p) == 2]
    effect = {}
    for task, metrics in pairs[0][True].items():
        metric = "rmse" if "rmse" in metrics else "auc"
        entry = {"metric": metric, "seeds": len(pairs)}
        for part in ("all", "cold"):
            def pick(metrics):
                return part_of(metrics, part).get(metric)
            deltas = [pick(p[True][task]) - pick(p[False][task]) for p in pairs
                      if pick(p[True][task]) is not None and pick(p[False][task]) is not None]
            if deltas:  # none where a slice holds one class only
                entry[part] = {"mean": float(np.mean(deltas)), "min": float(np.min(deltas)),
                               "max": float(np.max(deltas))}
        if metric == "auc" and task in oracle_cold and "cold" in entry:
            without = np.mean([p[False][task]["cold"]["auc"] for p in pairs
                               if "auc" in p[True][task].get("cold", {}) and "auc" in p[False][task].get("cold", {})])
            entry["cold_gap_closed"] = float(entry["cold"]["mean"] / (oracle_cold[task] - without))
        effect[task] = entry
    return effect


def plot(results, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = [t for t in results[0]["tasks"] if "gap" in results[0]["tasks"][t]]
    varies = lambda key: len({x[key] for x in results}) > 1  # noqa: E731
    rows = [f"{r['architecture']} / {r['weighting']}" + (f" / seed {r['seed']}" if varies("seed") else "")
            + ((" / text" if r["text"] else " / no text") if varies("text") else "") for r in results]
    gaps = np.array([[r["tasks"][t]["gap"] for t in tasks] for r in results])
    fig, ax = plt.subplots(figsize=(1.6 * len(tasks) + 3, 0.35 * len(rows) + 1.5))
    image = ax.imshow(gaps, cmap="RdYlGn_r", vmin=0, vmax=max(0.03, float(gaps.max())), aspect="auto")
    ax.set_xticks(range(len(tasks)), tasks)
    ax.set_yticks(range(len(rows)), rows)
    for (i, j), gap in np.ndenumerate(gaps):
        ax.text(j, i, f"{gap:.3f}", ha="center", va="center", fontsize=8)
    fig.colorbar(image, label="oracle AUC - model AUC")
    ax.set_title("AUC gap to the oracle on the eval split")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="JSON file to write (a PNG is written beside it)")
    parser.add_argument("--work-dir", default="work/bench-accuracy", help="pipeline work dir (reused across calls)")
    parser.add_argument("--impressions", type=int, help="synthetic log size (default: the config's, 200,000)")
    parser.add_argument("--architectures", default=",".join(RANKING))
    parser.add_argument("--weightings", default=",".join(WEIGHTINGS))
    parser.add_argument("--epochs", type=int, help="maximum epochs (default: the config's)")
    parser.add_argument("--seeds", default="", help="comma-separated training seeds: each configuration is trained "
                        "once per seed (default: the config's seed), to tell a change from the noise")
    parser.add_argument("--text", default="", help="with, without or with,without: train each configuration "
                        "with text features, without, or both (the text ablation; needs a run with text); "
                        "default: as the run did")
    parser.add_argument("--config", help="pipeline config YAML (default: mtrec's defaults)")
    parser.add_argument("--logs", help="event logs to run on (default: the synthetic log of --impressions)")
    parser.add_argument("--from-run", metavar="WORK_DIR", help="a finished run's work dir: no pipeline run")
    args = parser.parse_args(argv)

    raw = PipelineConfig.read_yaml(args.config) if args.config else {}
    if args.impressions:
        raw.setdefault("data", {})["impressions"] = args.impressions
    if args.logs:  # as `mtrec run --logs` reads them
        raw.setdefault("data", {}).update(source="events", path=args.logs)
    work_dir = os.path.abspath(args.from_run or args.work_dir)
    summary = None
    if args.from_run:
        with open(os.path.join(work_dir, runner.SUMMARY_FILE)) as f:
            summary = json.load(f)
    if summary is not None and "fields" not in raw.get("text", {}):  # as `mtrec run` did
        raw.setdefault("text", {})["fields"] = {table: used["fields"] for table, used in
                                                summary.get("text", {}).get("tables", {}).items()}
    default_synthetic_text(raw, raw)
    # With single-task baselines, so the run summary also says where multi-task learning helps.
    base = PipelineConfig.from_dict({**raw, "baselines": True})
    distribution.configure_threads(base.training)  # as the Trainer does, before TensorFlow starts
    if args.epochs:
        base.training.epochs = args.epochs
    if summary is None:
        print(f"Pipeline on {args.logs or f'{base.data.impressions} impressions'} ...", file=sys.stderr, flush=True)
        summary = runner.run(base, work_dir, data_dir=args.logs,
                             progress=lambda line: print(line, file=sys.stderr, flush=True))
    outputs = latest_run_outputs(os.path.join(work_dir, "metadata.db"))
    tft_output = tft.TFTransformOutput(outputs[("Transform", "transform_graph")].uri)
    examples = trainer_examples(outputs)
    oracle = {t: m["oracle_auc"] for t, m in summary["tasks"].items() if "oracle_auc" in m}
    oracle_cold = {t: m["oracle_auc"] for t, m in summary.get("cold_start", {}).items() if "oracle_auc" in m}
    cold_key = base.features.cold_start_key
    trained_items = tft_output.vocabulary_size_by_name(cold_key) if cold_key == ITEM_ID else None
    embeddings = outputs.get(("TextEmbedder", "embeddings"))
    text = text_tables(base, embeddings.uri if embeddings else None)

    results = []
    seeds = [int(seed) for seed in args.seeds.split(",")] if args.seeds else [base.training.seed]
    choices = {"with": True, "without": False}
    if args.text and not set(args.text.split(",")) <= set(choices):
        parser.error(f"--text {args.text}: say with, without or with,without")
    with_text = [choices[v] for v in args.text.split(",")] if args.text else [text is not None]
    if True in with_text and text is None:
        parser.error(f"{work_dir}'s run has no text features: use --text without")
    for architecture, weighting, seed, uses_text in itertools.product(
            args.architectures.split(","), args.weightings.split(","), seeds, with_text):
        config = dataclasses.replace(base, model=dataclasses.replace(base.model, architecture=architecture,
                                                                     weighting=weighting),
                                     training=dataclasses.replace(base.training, seed=seed))
        config = config if uses_text else config.without_text()
        config.validate()
        started = time.time()
        eval_data = transformed_dataset(examples, "eval", tft_output, config, False)
        network, log = train(config, transformed_dataset(examples, "train", tft_output, config, True), eval_data,
                             vocab_sizes(config, tft_output), log_dir=None, text=text if uses_text else None)
        seconds = time.time() - started
        tasks = score(network, eval_data, config, trained_items)
        for part, oracles in (("all", oracle), ("cold", oracle_cold)):
            for name, auc in oracles.items():
                metrics = part_of(tasks[name], part)
                if "auc" in metrics:
                    metrics.update(oracle_auc=auc, gap=auc - metrics["auc"])
        results.append({"architecture": architecture, "weighting": weighting, "seed": seed, "text": uses_text,
                        "epochs": log["epochs"], "train_s": round(seconds, 1), "tasks": tasks,
                        "task_weights": log["task_weights"][-1]})
        print(f"{architecture:>13} / {weighting:<11} / seed {seed} / {'text' if uses_text else 'no text'} " + "  ".join(
            f"{t}: gap {m['gap']:.4f}" if "gap" in m else f"{t}: rmse {m['rmse']:.3f}" for t, m in tasks.items())
            + f"  ({seconds:.0f}s)", file=sys.stderr, flush=True)

    worst_gap = lambda r: max(m["gap"] for m in r["tasks"].values() if "gap" in m)  # noqa: E731
    best = min(results, key=worst_gap)
    # one example per impression: also right for --logs and --from-run, whose config may not say
    report = {"impressions": sum(summary["examples"].values()), "oracle_auc": oracle, "results": results,
              "best": {"architecture": best["architecture"], "weighting": best["weighting"],
                       "worst_gap": worst_gap(best)},
              "goal": "best configuration within 0.01 AUC of the oracle on every binary task",
              "goal_met": worst_gap(best) <= 0.01}
    if len(with_text) == 2:
        report["text_effect"] = text_effect(results, oracle_cold)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=1)
    plot(results, os.path.splitext(args.out)[0] + ".png")
    print(json.dumps(report["best"]), "goal met" if report["goal_met"] else "goal NOT met", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
