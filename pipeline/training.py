"""Trainer's run_fn: trains the configured multi-task model and exports it for TF Serving and TFMA
(signatures: `mtrec.pipeline.export`).

Passed to the Trainer (`mtrec.components.trainer`) by import path (`mtrec.pipeline.training.run_fn`)
with the training part of the pipeline config as `custom_config`, and the TextEmbedder's vectors
when the config has text features. With `single_task: true` in custom_config (the baselines
Trainer) it trains one model per task instead and exports them side by side as one model, so TFMA
measures them all in a single pass.

Beside the model, `model_run` holds TensorBoard logs, `training.json` (per-epoch metrics and task
weights) and, for retrieval tasks, `retrieval.json` (top-K accuracy over every item).
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras
from absl import logging

from mtrec.components.text_embedder import read_embeddings, read_reviews
from mtrec.components.trainer import RAW_EXAMPLES, TEXT_EMBEDDINGS, TRAIN_FILES_BY_SPAN
from mtrec.config import RETRIEVAL, REVIEWS, TEXT_TABLES, PipelineConfig, TaskConfig
from mtrec.models.layers import ReviewTable, TextTables
from mtrec.models.multitask import MultiTaskModel, WeightingCallback, build_multitask_model, build_network
from mtrec.pipeline import distribution, warm_start
from mtrec.pipeline.datasets import dataset
from mtrec.pipeline.export import export_serving_model, side_by_side
from mtrec.pipeline.retrieval import item_features, item_frequencies, item_table, retrieval_metrics
from mtrec.terminal import PROGRESS
from mtrec.transformed import bucket_name

TRAINING_LOG = "training.json"
RETRIEVAL_LOG = "retrieval.json"


def vocab_sizes(config: PipelineConfig, tft_output: tft.TFTransformOutput) -> Dict[str, int]:
    features = config.features
    sizes = {name: tft_output.vocabulary_size_by_name(name) + features.oov_buckets for name in features.vocabulary}
    sizes.update(features.hashed)
    sizes.update({bucket_name(name): features.numeric_buckets + 1 for name in features.numeric})
    return sizes


def text_tables(config: PipelineConfig, uri: Optional[str]) -> Optional[TextTables]:
    """The TextEmbedder's vectors for the configured tables (None without text features)."""
    if not config.text.fields:
        return None
    if not uri:
        raise ValueError("text.fields is set but the Trainer has no text_embeddings input (the TextEmbedder's)")
    embeddings, reviews = read_embeddings(uri), None
    vectors = {}
    for table in config.text.fields:
        if table == REVIEWS:
            written = read_reviews(uri)
            if written is not None and written["has_text"].any():
                reviews = ReviewTable.from_reviews(written["items"], written["has_text"], written["vectors"])
            else:
                logging.warning("No review has text in %s: no review features", config.text.fields[table])
            continue
        ids, table_vectors = embeddings[table]
        if ids:
            vectors[TEXT_TABLES[table]] = (ids, table_vectors)
        else:
            logging.warning("No %s row has text in %s: no text features from it", table, config.text.fields[table])
    if config.text.reduce_dim and (vectors or reviews):
        basis = principal_directions(np.concatenate([v for _, v in vectors.values()]
                                                    + ([reviews.vectors[reviews.valid > 0]] if reviews else [])),
                                     config.text.reduce_dim)
        vectors = {name: (ids, table_vectors @ basis) for name, (ids, table_vectors) in vectors.items()}
        if reviews:
            reviews = dataclasses.replace(reviews, vectors=reviews.vectors @ basis)
    # Only vocabulary ids have OOV rows to stand in for (a hashed id's bucket is all it has).
    from_text = [TEXT_TABLES[table] for table in config.text.unknown_ids_from_text]
    oov_buckets = {name: config.features.oov_buckets for name in from_text
                   if name in vectors and name in config.features.vocabulary and config.features.oov_buckets}
    return TextTables(vectors, config.text.projection_dim, config.text.match, reviews, oov_buckets)


def principal_directions(vectors: np.ndarray, count: int) -> np.ndarray:
    """[d, count]: the top `count` eigenvectors of vectors' second moment (a truncated SVD, no
    centring: projections keep dot products, so cosines, as well as `count` dimensions can)."""
    if count > vectors.shape[1]:
        raise ValueError(f"text.reduce_dim={count} is more than the encoder's {vectors.shape[1]} dimensions")
    _, eigenvectors = np.linalg.eigh(vectors.T.astype(np.float64) @ vectors)  # ascending eigenvalues
    return eigenvectors[:, ::-1][:, :count].astype(np.float32)


def single_task_config(config: PipelineConfig, task: TaskConfig) -> PipelineConfig:
    """The baseline for `task`: same features and training, trained on that task alone.

    Every head stays but the other tasks weigh 0, so they send no gradient into what is shared
    (and a conditional task keeps its `given` label). Ranking architectures become shared-bottom:
    nothing left to share. Two-tower models keep their towers, so, as in the TFRS tutorial's
    rating-only and retrieval-only models, each baseline can be measured on the other tasks too.
    """
    tasks = [dataclasses.replace(t, weight=1.0 if t.name == task.name else 0.0) for t in config.tasks]
    architecture = "two_tower" if config.model.architecture == "two_tower" else "shared_bottom"
    model = dataclasses.replace(config.model, architecture=architecture, weighting="fixed")
    return dataclasses.replace(config, tasks=tasks, model=model)


class EpochProgress(keras.callbacks.Callback):
    """One progress line per epoch (through absl, which `mtrec run` shows), instead of Keras's
    stdout output."""

    def __init__(self, epochs: int, name: str = ""):
        super().__init__()
        self.epochs, self.name, self.started = epochs, f"{name}: " if name else "", 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.time()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        shown = ", ".join(f"{k}={logs[k]:.4f}" for k in ("loss", "val_loss") if k in logs)
        logging.info("%s%sepoch %d/%d %s (%.1fs)", PROGRESS, self.name, epoch + 1, self.epochs, shown,
                     time.time() - self.started)


def build(config: PipelineConfig, sizes: Dict[str, int], strategy: tf.distribute.Strategy,
          item_probability: Optional[np.ndarray] = None, text: Optional[TextTables] = None) -> MultiTaskModel:
    keras.utils.set_random_seed(config.training.seed)
    with strategy.scope():
        return build_multitask_model(config, sizes, item_probability, text)


def fit(model: MultiTaskModel, config: PipelineConfig, train_data, eval_data, log_dir: Optional[str],
        strategy: tf.distribute.Strategy, backup: Optional[str] = None, name: str = "") -> Dict:
    """Fits `model` under `strategy`, resuming from the `backup` dir if it holds an interrupted
    run's last epoch; returns {epoch metrics, task weights per epoch}."""
    weights = WeightingCallback(model.weighting)
    callbacks = [keras.callbacks.EarlyStopping(patience=config.training.patience, restore_best_weights=True), weights,
                 EpochProgress(config.training.epochs, name)]
    if backup and isinstance(strategy, tf.distribute.OneDeviceStrategy):
        logging.warning("No epoch backups under one_device: Keras's BackupAndRestore does not support "
                        "OneDeviceStrategy (the default strategy has them, on the same device)")
    elif backup:
        callbacks.insert(0, keras.callbacks.BackupAndRestore(backup))
    if log_dir:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=log_dir, update_freq="epoch"))
    logging.info("Training %s (%s weighting) on tasks %s with %s, %d replica(s), global batch %d",
                 config.model.architecture, config.model.weighting,
                 [t.name for t in config.tasks if t.weight or config.model.weighting != "fixed"],
                 type(strategy).__name__, strategy.num_replicas_in_sync,
                 config.training.batch_size * strategy.num_replicas_in_sync)
    started = time.time()
    history = model.fit(train_data, validation_data=eval_data, epochs=config.training.epochs, verbose=0,
                        callbacks=callbacks)
    seconds = round(time.time() - started, 1)
    final = model.evaluate(eval_data, verbose=0, return_dict=True)  # the restored best weights
    return {"architecture": config.model.architecture, "weighting": config.model.weighting,
            "strategy": config.training.strategy, "replicas": strategy.num_replicas_in_sync,
            "mixed_precision": config.training.mixed_precision or "float32",
            "epochs": len(history.epoch), "first_epoch": history.epoch[0] if history.epoch else None,
            "patience": config.training.patience,
            "fit_seconds": seconds,
            "task_weights": weights.history,
            "eval": {k: float(v) for k, v in final.items()},
            "metrics": {k: [float(v) for v in values] for k, values in history.history.items()}}


def train(config: PipelineConfig, train_data, eval_data, sizes: Dict[str, int], log_dir: Optional[str],
          item_probability: Optional[np.ndarray] = None, strategy: Optional[tf.distribute.Strategy] = None,
          backup: Optional[str] = None, name: str = "", text: Optional[TextTables] = None,
          initialize: Optional[Callable[[keras.Model], Dict]] = None,
          warm_train_data: Optional[Callable[[], tf.data.Dataset]] = None) -> Tuple[keras.Model, Dict]:
    """Builds and fits the configured model; returns the network and its training log (`fit`).
    `initialize` sets the built network's weights before training (warm start) and says how; when
    it did, the model trains on `warm_train_data()` (the newest spans) if given."""
    strategy = strategy or tf.distribute.get_strategy()
    model = build(config, sizes, strategy, item_probability, text)
    started = initialize(model.network) if initialize else None
    warm = bool(started and started.get("warm_start"))
    newest_only = warm and warm_train_data is not None
    if warm:  # it starts near its best: one pass over its data, or confirm its best in fewer epochs
        training = config.training
        config = dataclasses.replace(config, training=dataclasses.replace(
            training, epochs=training.warm_start_epochs or training.epochs, patience=training.warm_start_patience))
    log = fit(model, config, warm_train_data() if newest_only else train_data, eval_data, log_dir, strategy, backup,
              name)
    if started is not None:
        log["warm_start"] = {**started, "newest_spans_only": newest_only} if warm else started
    return model.network, log


def train_single_task(config: PipelineConfig, train_data, eval_data, sizes: Dict[str, int],
                      log_dir: Callable[[str], Optional[str]], item_probability: Optional[np.ndarray],
                      strategy: tf.distribute.Strategy, backup: Callable[[str], str],
                      text: Optional[TextTables] = None) -> Tuple[Dict[str, keras.Model], Dict[str, Dict]]:
    """One baseline per task (`single_task_config`), as if each were built and trained alone.

    They differ only in their task weights, so one model is built and its steps traced once; for
    each task it restarts from the same initial weights (those every baseline built alone would
    have, from the same seed) with a fresh optimizer. Returns {task: network}, {task: training log};
    `log_dir` and `backup` name each task's directories."""
    configs = {t.name: single_task_config(config, t) for t in config.tasks}
    first = next(iter(configs.values()))
    model = build(first, sizes, strategy, item_probability, text)
    initial = model.network.get_weights()
    networks, logs = {}, {}
    for name, task_config in configs.items():
        keras.utils.set_random_seed(config.training.seed)
        model.retask(task_config.tasks, initial)
        logs[name] = fit(model, task_config, train_data, eval_data, log_dir(name), strategy, backup(name), name)
        with strategy.scope():
            networks[name] = build_network(first, sizes, text)
        networks[name].set_weights(model.network.get_weights())
    return networks, logs


def _write_json(directory: str, name: str, value) -> None:
    tf.io.gfile.makedirs(directory)
    with tf.io.gfile.GFile(os.path.join(directory, name), "w") as f:
        f.write(json.dumps(value, indent=1))


def newest_train_files(custom_config: Dict, spans: int) -> List[str]:
    """The train files of the newest `spans` spans of a daily run's window (the Trainer's
    `train_files_by_span`); [] when that is the whole window, or not a daily run, or `spans` is 0."""
    by_span = custom_config.get(TRAIN_FILES_BY_SPAN) or {}
    if not spans or len(by_span) <= spans:
        return []
    return [pattern for span in sorted(by_span, key=int)[-spans:] for pattern in by_span[span]]


def run_fn(fn_args) -> None:
    """TFX Trainer entry point. In a multi-worker cluster every worker runs it (TF_CONFIG tells
    them apart): all train and save, only the chief writes the model and logs."""
    config = PipelineConfig.from_json(fn_args.custom_config["config"])
    # Devices and collectives first: both must be set up before TensorFlow's runtime starts.
    distribution.configure_logical_cpus(config.training.logical_cpu_devices)
    distribution.configure_threads(config.training)
    strategy = distribution.make_strategy(config.training)
    if config.training.strategy == "multi_worker_mirrored" and config.training.steps_per_execution > 1:
        # Several steps per call need every worker to know how many batches its shard holds;
        # sharded by batch, the workers' last batches differ and their collectives would not match.
        logging.warning("multi_worker_mirrored: steps_per_execution %d -> 1", config.training.steps_per_execution)
        config = dataclasses.replace(config, training=dataclasses.replace(config.training, steps_per_execution=1))
    distribution.set_precision(config.training)
    try:
        _train_and_export(fn_args, config, strategy)
    finally:
        keras.mixed_precision.set_global_policy("float32")  # other components share the process


def _train_and_export(fn_args, config: PipelineConfig, strategy: tf.distribute.Strategy) -> None:
    single_task = bool(fn_args.custom_config.get("single_task"))
    chief = distribution.is_chief()
    tft_output = tft.TFTransformOutput(fn_args.transform_output)
    replicas = strategy.num_replicas_in_sync
    # The datasets' random draws take their seeds from the global one too: set here, not first by
    # `build`, they are the same whatever ran in this process before (another day, another mode).
    keras.utils.set_random_seed(config.training.seed)
    make = lambda files, shuffle: dataset(files, fn_args.data_accessor, tft_output, config, shuffle,  # noqa: E731
                                          replicas=replicas, raw=bool(fn_args.custom_config.get(RAW_EXAMPLES)))
    train_data, eval_data = make(fn_args.train_files, True), make(fn_args.eval_files, False)
    sizes = vocab_sizes(config, tft_output)
    text = text_tables(config, fn_args.custom_config.get(TEXT_EMBEDDINGS))
    retrieval = [t for t in config.tasks if t.type == RETRIEVAL]
    probability = item_frequencies(train_data, sizes["item_id"]) if retrieval else None
    backup_root = distribution.backup_dir(config.training, fn_args.model_run_dir,
                                          json.dumps([fn_args.custom_config, sorted(fn_args.train_files)], sort_keys=True))

    log_dir = lambda name: (os.path.join(fn_args.model_run_dir, name) if name else fn_args.model_run_dir) \
        if chief else None  # noqa: E731
    backup = lambda name: os.path.join(backup_root, name or "model")  # noqa: E731
    if single_task:
        networks, logs = train_single_task(config, train_data, eval_data, sizes, log_dir, probability, strategy,
                                           backup, text)
    else:
        newest = newest_train_files(fn_args.custom_config, config.training.warm_start_spans)
        network, log = train(config, train_data, eval_data, sizes, log_dir(""), probability, strategy, backup(""),
                             text=text, initialize=lambda net: warm_start.restore(net, fn_args.base_model, tft_output,
                                                                                  config),
                             warm_train_data=(lambda: make(newest, True)) if newest else None)
        networks, logs = {"": network}, {"": log}
    retrieval_logs = {}
    items = item_table(train_data.concatenate(eval_data), item_features(next(iter(networks.values())))) \
        if retrieval else None
    for task in retrieval:
        for name, network in networks.items():  # baselines: every one, also those not trained for it
            metrics = retrieval_metrics(network, eval_data, items, task)
            logs[name].setdefault("retrieval", {})[task.name] = metrics
            if name in ("", task.name):
                retrieval_logs[task.name] = metrics
        logging.info("Retrieval %s on the eval split: %s", task.name, retrieval_logs[task.name])
    # Every worker saves (saving may need collectives), only the chief where TFX looks.
    export_dir = fn_args.serving_model_dir if chief else distribution.scratch_dir(fn_args.model_run_dir)
    if single_task:
        export_serving_model(side_by_side(networks), tft_output, config, export_dir)
    else:
        export_serving_model(networks[""], tft_output, config, export_dir, items)
    if not chief:
        tf.io.gfile.rmtree(export_dir)
        distribution.wait_for_chief_export(fn_args.serving_model_dir)
        return
    if not single_task:  # what the next day's Trainer warm-starts from
        warm_start.save(networks[""], tft_output, config, os.path.dirname(fn_args.serving_model_dir.rstrip("/")))
    _write_json(fn_args.model_run_dir, TRAINING_LOG, logs if single_task else logs[""])
    if retrieval:
        _write_json(fn_args.model_run_dir, RETRIEVAL_LOG, retrieval_logs)
