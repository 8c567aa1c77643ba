"""Training throughput: our Trainer's input pipeline + fit, the raw train_step, and DeepCTR's MMOE.

    python bench/train_throughput.py --work-dir work --out bench/results/train_throughput.json

Reads what the Trainer of a finished `mtrec run` in WORK_DIR read (the main job's, by default: the
raw examples through Transform's graph, or Transform's written examples) and,
in one process, for one fixed MMoE configuration (the default config's sizes and tasks):
  - `mtrec_examples_per_s`: what the Trainer runs, the input pipeline of
    `mtrec.pipeline.datasets.dataset` (the split parsed into memory once by TFXIO, `training.cache`)
    into `Model.fit` with the config's batch size, steps_per_execution and jit_compile;
  - `raw_step_examples_per_s`: the same model's train_step on batches already in memory, 32 steps
    per tf.function call (Python out of the loop): the ceiling of any input pipeline;
  - `deepctr_examples_per_s`: DeepCTR's MMOE (a bench-only extra: `pip install deepctr==0.9.4`) with
    the same features, embedding size, experts, towers and batch size, fed from numpy arrays as
    its documentation does.
Steady state: the first `--warmup` share of steps (tracing, compilation) is not counted. Also
measures each setting on its own (batch size, steps_per_execution, XLA, input pipeline alone),
so the JSON says what each bought; the configured fit streamed from the files instead of
`training.cache`'s memory, with and without TFXIO's parallel reads, parsing and prefetch (raw
examples streamed go through the graph every batch: `train_files_raw` in the JSON); and the
configured fit without the DCN cross layer, the network DeepCTR's MMOE has.
Threads: the process sizes TensorFlow's pools as the Trainer does (`training.intra_op_threads`,
`inter_op_threads`), so these figures share them; `deepctr_tf_defaults` is DeepCTR as its users
run it, in a child process at TensorFlow's default pools, and `mtrec fit, configured, TF's
default threads` our fit the same way (what the Trainer's setting buys).
Goals: >= 2x DeepCTR; >= 0.9 of the raw train_step rate.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from typing import NamedTuple

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from bench import machine  # noqa: E402

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_transform as tft  # noqa: E402
import tf_keras as keras  # noqa: E402
from tfx.components.trainer.fn_args_utils import DataAccessor  # noqa: E402

from mtrec.config import BINARY, PipelineConfig  # noqa: E402
from mtrec.models.multitask import build_multitask_model  # noqa: E402
from mtrec.transformed import bucket_name  # noqa: E402
from mtrec.pipeline import distribution  # noqa: E402
from mtrec.pipeline.datasets import dataset, record_accessor  # noqa: E402
from mtrec.pipeline.training import vocab_sizes  # noqa: E402
from mtrec.reporting.summary import latest_run_outputs, trainer_examples  # noqa: E402

GOALS = {"vs_deepctr": 2.0, "vs_raw_step": 0.9}
RAW_STEPS_PER_CALL = 32


class TrainFiles(NamedTuple):
    pattern: str
    raw: bool  # raw examples, which go through Transform's graph (datasets.dataset)


def transform_output(work_dir: str):
    """(TrainFiles of the train split, transform graph dir) of what the latest run's Trainer in
    `work_dir` read (`trainer_examples`: Transform's written examples, or the ingested ones)."""
    metadata = os.path.join(work_dir, "metadata.db")
    if not os.path.exists(metadata):
        raise SystemExit(f"no pipeline run in {work_dir}: run `mtrec run --work-dir {work_dir}` first")
    outputs = latest_run_outputs(metadata)
    uri, raw = trainer_examples(outputs)
    return TrainFiles(os.path.join(uri, "Split-train", "*"), raw), outputs[("Transform", "transform_graph")].uri


def data_accessor(sequential: bool = False) -> DataAccessor:
    """The Trainer's accessor; `sequential` takes away TFXIO's parallel reads, parallel parsing and
    prefetch (to measure what they buy)."""
    accessor = record_accessor("mtrec-bench")
    if not sequential:
        return accessor
    one_at_a_time = lambda files, options, schema: accessor.tf_dataset_factory(  # noqa: E731
        files, options._replace(reader_num_threads=1, parser_num_threads=1, prefetch_buffer_size=1), schema)
    return accessor._replace(tf_dataset_factory=one_at_a_time)


class StepClock(keras.callbacks.Callback):
    """Time of each batch end (with steps_per_execution > 1, of each execution's last batch)."""

    def __init__(self):
        super().__init__()
        self.marks = []

    def on_train_batch_end(self, batch, logs=None):
        self.marks.append((batch + 1, time.perf_counter()))


def steady_rate(marks, batch_size: int, warmup: float) -> float:
    start = next(m for m in marks if m[0] >= warmup * marks[-1][0])
    steps, seconds = marks[-1][0] - start[0], marks[-1][1] - start[1]
    return steps * batch_size / seconds


def with_training(config: PipelineConfig, **training) -> PipelineConfig:
    return dataclasses.replace(config, training=dataclasses.replace(config.training, **training))


def mtrec_fit(config, files, tft_output, sizes, steps: int, warmup: float, sequential: bool = False) -> float:
    keras.utils.set_random_seed(0)
    model = build_multitask_model(config, sizes)
    data = dataset(files.pattern, data_accessor(sequential), tft_output, config, shuffle=True, epochs=None,
                   raw=files.raw)
    if config.training.jit_compile:  # XLA takes no strings: keep only what this text-less model reads
        taken = set(model.network.input_names)
        data = data.map(lambda features, labels: ({k: v for k, v in features.items() if k in taken}, labels))
    clock = StepClock()
    model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0, callbacks=[clock])
    return steady_rate(clock.marks, config.training.batch_size, warmup)


def in_memory_batches(config, files, tft_output, count: int):
    return list(dataset(files.pattern, data_accessor(), tft_output, config, shuffle=True, epochs=None,
                        raw=files.raw).take(count))


def raw_step(config, batches, sizes, steps: int, warmup: float, per_call: int = RAW_STEPS_PER_CALL) -> float:
    """train_step on batches already in memory (stacked tensors), `per_call` steps per tf.function
    call so that Python is out of the loop: the ceiling for any input pipeline."""
    keras.utils.set_random_seed(0)
    model = build_multitask_model(config, sizes)
    stacked = tf.nest.map_structure(lambda *t: tf.stack(t), *batches)
    count = len(batches)

    @tf.function(jit_compile=config.training.jit_compile)
    def run(first):
        loss = tf.constant(0.0)
        for i in tf.range(per_call):
            loss = model.train_step(tf.nest.map_structure(lambda t: t[(first + i) % count], stacked))["loss"]
        return loss

    marks = []
    for call in range(max(1, steps // per_call)):
        float(run(tf.constant(call * per_call)))  # waits for the steps to finish
        marks.append(((call + 1) * per_call, time.perf_counter()))
    return steady_rate(marks, config.training.batch_size, warmup)


def deepctr_fit(config, batches, sizes, steps: int, warmup: float) -> float:
    """DeepCTR's MMOE at our sizes, on the same examples as numpy arrays."""
    from deepctr.feature_column import DenseFeat, SparseFeat
    from deepctr.models import MMOE

    features = config.features
    sparse = features.ids + features.categorical + [bucket_name(n) for n in features.numeric]
    columns = [SparseFeat(name, sizes[name], embedding_dim=config.model.embedding_dim) for name in sparse]
    columns += [DenseFeat(name, 1) for name in features.numeric]
    tasks = config.tasks
    keras.utils.set_random_seed(0)
    model = MMOE(columns, num_experts=config.model.num_experts,
                 expert_dnn_hidden_units=tuple(config.model.expert_units),
                 tower_dnn_hidden_units=tuple(config.model.tower_units),
                 task_types=["binary" if t.type == BINARY else "regression" for t in tasks],
                 task_names=[t.name for t in tasks])
    model.compile(keras.optimizers.Adam(config.training.learning_rate),
                  loss=["binary_crossentropy" if t.type == BINARY else "huber" for t in tasks])
    x = {name: np.concatenate([b[0][name].numpy() for b in batches]).reshape(-1) for name in sparse + features.numeric}
    y = [np.concatenate([b[1][t.label].numpy() for b in batches]) for t in tasks]
    clock = StepClock()
    epochs = max(1, -(-steps // len(batches)))
    model.fit(x, y, batch_size=config.training.batch_size, epochs=epochs, verbose=0, callbacks=[clock], shuffle=True)
    marks = [(i + 1, t) for i, (_, t) in enumerate(clock.marks)]  # batch numbers restart each epoch
    return steady_rate(marks, config.training.batch_size, warmup)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work-dir", default="work", help="a finished `mtrec run` work dir (its Transform output)")
    parser.add_argument("--steps", type=int, default=400, help="training steps per measurement")
    parser.add_argument("--warmup", type=float, default=0.25, help="share of steps not counted")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of every measurement; the best counts")
    parser.add_argument("--out", help="JSON file to write")
    parser.add_argument("--only", help=argparse.SUPPRESS)  # a child's one figure, printed
    parser.add_argument("--tf-default-threads", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.only and not args.out:
        parser.error("--out is required")
    config = PipelineConfig()
    if not args.tf_default_threads:
        distribution.configure_threads(config.training)  # as the Trainer does, before TensorFlow starts

    files, graph = transform_output(os.path.abspath(args.work_dir))
    tft_output = tft.TFTransformOutput(graph)
    config.model.architecture = "mmoe"
    sizes = vocab_sizes(config, tft_output)
    training = config.training
    batch, spe, jit = training.batch_size, training.steps_per_execution, training.jit_compile
    if not args.only:
        print(f"MMoE, batch {batch}, steps_per_execution {spe}, jit_compile {jit}, threads per op "
              f"{training.intra_op_threads}; {args.steps} steps per figure", file=sys.stderr)

    # Every setting on its own against the plainest Trainer; then, round after round, the
    # headline figures side by side. The best round counts (the machine is shared and noisy).
    plain = with_training(config, batch_size=256, steps_per_execution=1, jit_compile=False)
    variants = {"plain (batch 256, 1 step per call, no XLA)": plain,
                "steps_per_execution 32": with_training(plain, steps_per_execution=32),
                "jit_compile (XLA)": with_training(plain, jit_compile=True),
                "batch 1024": with_training(plain, batch_size=1024)}
    streamed = with_training(config, cache="none")
    # DeepCTR's MMOE has no DCN cross layer; ours does by default (a third of the step's flops).
    without_cross = dataclasses.replace(config, model=dataclasses.replace(config.model, cross_layers=0))
    batches = in_memory_batches(config, files, tft_output, 100)
    measures = {**{f"mtrec fit, {name}": (lambda v=variant: mtrec_fit(v, files, tft_output, sizes, args.steps,
                                                                       args.warmup))
                   for name, variant in variants.items()},
                "mtrec": lambda: mtrec_fit(config, files, tft_output, sizes, args.steps, args.warmup),
                "raw_step": lambda: raw_step(config, batches, sizes, args.steps, args.warmup),
                "deepctr": lambda: deepctr_fit(config, batches, sizes, args.steps, args.warmup),
                "mtrec fit, configured, without the cross layer (DeepCTR's network)":
                    lambda: mtrec_fit(without_cross, files, tft_output, sizes, args.steps, args.warmup),
                "mtrec fit, configured, streamed from the files (training.cache: none)":
                    lambda: mtrec_fit(streamed, files, tft_output, sizes, args.steps, args.warmup),
                "mtrec fit, configured, streamed, sequential input (1 reader, 1 parser, no prefetch)":
                    lambda: mtrec_fit(streamed, files, tft_output, sizes, args.steps, args.warmup, sequential=True)}
    if args.only:
        print(json.dumps({"examples_per_s": measures[args.only]()}))
        return

    def at_tf_default_threads(name):
        """`name` measured in a child process whose TensorFlow keeps its default thread pools."""
        command = [sys.executable, os.path.abspath(__file__), "--work-dir", args.work_dir, "--steps", str(args.steps),
                   "--warmup", str(args.warmup), "--only", name, "--tf-default-threads"]
        out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        return json.loads(out.strip().splitlines()[-1])["examples_per_s"]

    measures["deepctr_tf_defaults"] = lambda: at_tf_default_threads("deepctr")
    measures["mtrec fit, configured, TF's default threads"] = lambda: at_tf_default_threads("mtrec")
    rounds = {name: [] for name in measures}
    for round_ in range(args.rounds):
        for name, measure in measures.items():
            rounds[name].append(round(measure()))
            print(f"  round {round_ + 1}, {name}: {rounds[name][-1]:,} examples/s", file=sys.stderr)
    best = {name: max(values) for name, values in rounds.items()}
    ours, raw, deepctr, deepctr_defaults = best["mtrec"], best["raw_step"], best["deepctr"], best["deepctr_tf_defaults"]
    settings = {name[len("mtrec fit, "):]: best[name] for name in best if name.startswith("mtrec fit, ")}

    results = {
        "machine": {**machine.describe(), "tensorflow": tf.__version__},
        "model": {"architecture": "mmoe", "embedding_dim": config.model.embedding_dim,
                  "num_experts": config.model.num_experts, "expert_units": config.model.expert_units,
                  "tower_units": config.model.tower_units, "tasks": [t.name for t in config.tasks],
                  "batch_size": batch, "steps_per_execution": spe, "jit_compile": jit},
        "threads": {"intra_op": training.intra_op_threads, "inter_op": training.inter_op_threads},
        "steps": args.steps, "warmup_share": args.warmup, "train_files_raw": files.raw,
        "mtrec_examples_per_s": round(ours), "raw_step_examples_per_s": round(raw),
        "deepctr_examples_per_s": round(deepctr), "deepctr_tf_defaults_examples_per_s": round(deepctr_defaults),
        "mtrec_vs_deepctr": round(ours / deepctr_defaults, 2),
        "mtrec_vs_deepctr_same_threads": round(ours / deepctr, 2), "mtrec_vs_raw_step": round(ours / raw, 2),
        "mtrec_without_cross_vs_deepctr": round(settings["configured, without the cross layer (DeepCTR's network)"]
                                                / deepctr, 2),
        "settings_examples_per_s": settings, "rounds": rounds, "goals": GOALS}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)
    plot(results, os.path.splitext(args.out)[0] + ".png")
    print(json.dumps(results, indent=1))


def plot(results: dict, path: str) -> None:
    """Every figure's rounds (dots) and best (bar), with the goals' lines: 2x DeepCTR as its users
    run it and 0.9 of the raw step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rounds = results["rounds"]
    names = sorted(rounds, key=lambda n: -max(rounds[n]))
    fig, ax = plt.subplots(figsize=(10, 0.4 * len(names) + 1.5))
    y = np.arange(len(names))
    ax.barh(y, [max(rounds[n]) for n in names], color=["C1" if "deepctr" in n else "C0" for n in names])
    for i, name in enumerate(names):
        ax.plot(rounds[name], [i] * len(rounds[name]), "k.", markersize=4)
    ax.axvline(GOALS["vs_deepctr"] * results["deepctr_tf_defaults_examples_per_s"], color="C1", linestyle="--",
               label=f"goal: {GOALS['vs_deepctr']:g}x DeepCTR (TF's default threads)")
    ax.axvline(GOALS["vs_raw_step"] * results["raw_step_examples_per_s"], color="grey", linestyle=":",
               label=f"goal: {GOALS['vs_raw_step']:g} of the raw step")
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set_xlabel("examples/s (bar: best round; dots: every round)")
    ax.set_title(f"MMoE training, {results['machine'].get('cpus', '?')} cores: mtrec "
                 f"{results['mtrec_vs_deepctr']}x DeepCTR,\n{results['mtrec_vs_raw_step']} of the raw step",
                 fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
