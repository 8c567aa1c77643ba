"""Trainer's run_fn: trains the configured multi-task model and exports it for TF Serving and TFMA.

Passed to the Trainer by import path (`mtrec.pipeline.training.run_fn`) with the training part of
the pipeline config as `custom_config`. With `single_task: true` in custom_config (the baselines
Trainer) it trains one model per task instead and exports them side by side as one model, so TFMA
compares them with the multi-task model in a single pass.

Exported signatures, returning {task name: [batch, 1]} (plus embeddings for two-tower models):
  serving_default: serialized tf.Example (`examples`) -> parsed -> Transform graph -> model.
  serving_raw: one [batch] tensor per raw feature -> Transform graph -> model (rank candidates).
  rank: raw features + a scalar `weight_<task>` per scored task -> task scores and their blend `score`.
  evaluate: like serving_default, only the TFMA-evaluated tasks (what the Evaluator calls).
  retrieve (two-tower models): raw query features -> top-100 `item_ids` and `scores` per query.

Beside the model, `model_run` holds TensorBoard logs, `training.json` (per-epoch metrics and task
weights) and, for retrieval tasks, `retrieval.json` (top-K accuracy over every item).
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Dict, Optional, Tuple

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs
import tensorflow_transform as tft
import tf_keras as keras
from absl import logging
from tfx_bsl.public import tfxio

from mtrec.config import RETRIEVAL, PipelineConfig, TaskConfig
from mtrec.models.multitask import WeightingCallback, build_multitask_model
from mtrec.models.two_tower import ITEM_TOWER, QUERY_TOWER
from mtrec.pipeline import distribution
from mtrec.pipeline.preprocessing import bucket_name
from mtrec.serving.signatures import (BLEND_OUTPUT, EVALUATE, RANK, RETRIEVE, SERVING_DEFAULT, SERVING_RAW,
                                     WEIGHT_PREFIX)

TOP_K = (1, 10, 50, 100)
TRAINING_LOG = "training.json"
RETRIEVAL_LOG = "retrieval.json"


def vocab_sizes(config: PipelineConfig, tft_output: tft.TFTransformOutput) -> Dict[str, int]:
    features = config.features
    sizes = {name: tft_output.vocabulary_size_by_name(name) + features.oov_buckets
             for name in features.ids + features.categorical}
    sizes.update({bucket_name(name): features.numeric_buckets + 1 for name in features.numeric})
    return sizes


def dataset(files, data_accessor, tft_output, config: PipelineConfig, shuffle: bool,
            epochs: Optional[int] = 1, replicas: int = 1) -> tf.data.Dataset:
    """(transformed features, {label name: label}) batches of the global batch size: batch_size
    per replica. Workers of a cluster each keep their share of the batches (DATA sharding: the
    Transform output has fewer files than a cluster may have workers)."""
    data = data_accessor.tf_dataset_factory(
        files, tfxio.TensorFlowDatasetOptions(batch_size=config.training.batch_size * replicas, num_epochs=epochs,
                                              shuffle=shuffle, shuffle_seed=config.training.seed),
        tft_output.transformed_metadata.schema)
    if config.training.steps_per_execution > 1 and epochs:  # Keras must know how long an epoch is to
        # run several steps per call
        batches = -(-example_count(files) // (config.training.batch_size * replicas))
        data = data.apply(tf.data.experimental.assert_cardinality(batches * epochs))
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return (data.map(label_splitter(config), num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
            .with_options(options))


def example_count(files) -> int:
    """Records in `files` (TFRecord patterns, gzipped or not), counted without parsing them."""
    paths = sorted(p for pattern in ([files] if isinstance(files, str) else files) for p in tf.io.gfile.glob(pattern))
    if not paths:
        raise FileNotFoundError(f"no examples match {files}")
    compression = "GZIP" if paths[0].endswith(".gz") else ""
    return int(tf.data.TFRecordDataset(paths, compression_type=compression).reduce(np.int64(0), lambda n, _: n + 1))


def label_splitter(config: PipelineConfig):
    """batch -> (features, {label name: label}): what `MultiTaskModel` trains and evaluates on."""
    labels = set(config.label_keys)

    def split(batch):
        return {k: v for k, v in batch.items() if k not in labels}, {k: v for k, v in batch.items() if k in labels}

    return split


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


# --- retrieval -----------------------------------------------------------------------------------

def _item_features(network: keras.Model):
    return list(network.get_layer(ITEM_TOWER).input_names)


def item_table(data: tf.data.Dataset, names) -> Dict[str, np.ndarray]:
    """One row per item id seen in `data`, with its item-tower features: the retrieval candidates."""
    seen: Dict[int, Dict] = {}
    for features, _ in data.as_numpy_iterator():
        for row, item in enumerate(features["item_id"][:, 0]):
            if item not in seen:
                seen[item] = {name: features[name][row] for name in names}
    order = sorted(seen)
    return {name: np.stack([seen[i][name] for i in order]) for name in names}


def item_frequencies(data: tf.data.Dataset, num_items: int) -> np.ndarray:
    """Share of training examples per item id: the in-batch sampling probability TFRS corrects for."""
    counts = np.zeros(num_items)
    for features, _ in data.as_numpy_iterator():
        np.add.at(counts, features["item_id"][:, 0], 1)
    return counts / max(counts.sum(), 1)


def retrieval_metrics(network: keras.Model, data: tf.data.Dataset, items: Dict[str, np.ndarray],
                      task: TaskConfig) -> Dict[str, float]:
    """Top-K categorical accuracy over every item (TFRS FactorizedTopK), positives weighted by
    the task's `given` label when it has one."""
    query_tower, item_tower = network.get_layer(QUERY_TOWER), network.get_layer(ITEM_TOWER)
    index = tfrs.layers.factorized_top_k.BruteForce(k=max(TOP_K))
    index.index(item_tower(items, training=False))
    metric = tfrs.metrics.FactorizedTopK(candidates=index, ks=TOP_K)
    for features, labels in data:
        query = query_tower({n: features[n] for n in query_tower.input_names}, training=False)
        true = item_tower({n: features[n] for n in item_tower.input_names}, training=False)
        weight = tf.reshape(labels[task.given], [-1]) if task.given else None
        metric.update_state(query, true, sample_weight=weight)
    return {f"top_{k}": float(v.numpy()) for k, v in zip(TOP_K, metric.result())}


# --- training and export -------------------------------------------------------------------------

def train(config: PipelineConfig, train_data, eval_data, sizes: Dict[str, int], log_dir: Optional[str],
          item_probability: Optional[np.ndarray] = None, strategy: Optional[tf.distribute.Strategy] = None,
          backup: Optional[str] = None) -> Tuple[keras.Model, Dict]:
    """Fits the configured model under `strategy`, resuming from the `backup` dir if it holds an
    interrupted run's last epoch; returns the network and {epoch metrics, task weights per epoch}."""
    keras.utils.set_random_seed(config.training.seed)
    strategy = strategy or tf.distribute.get_strategy()
    with strategy.scope():
        model = build_multitask_model(config, sizes, item_probability)
    weights = WeightingCallback(model.weighting)
    callbacks = [keras.callbacks.EarlyStopping(patience=config.training.patience, restore_best_weights=True), weights]
    if backup and isinstance(strategy, tf.distribute.OneDeviceStrategy):
        logging.warning("No epoch backups under one_device: Keras's BackupAndRestore does not support "
                        "OneDeviceStrategy (the default strategy has them, on the same device)")
    elif backup:
        callbacks.insert(0, keras.callbacks.BackupAndRestore(backup))
    if log_dir:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=log_dir, update_freq="epoch"))
    logging.info("Training %s (%s weighting) on tasks %s with %s, %d replica(s), global batch %d",
                 config.model.architecture, config.model.weighting, [t.name for t in config.tasks],
                 type(strategy).__name__, strategy.num_replicas_in_sync,
                 config.training.batch_size * strategy.num_replicas_in_sync)
    history = model.fit(train_data, validation_data=eval_data, epochs=config.training.epochs, verbose=2,
                        callbacks=callbacks)
    final = model.evaluate(eval_data, verbose=0, return_dict=True)  # the restored best weights
    return model.network, {"architecture": config.model.architecture, "weighting": config.model.weighting,
                           "strategy": config.training.strategy, "replicas": strategy.num_replicas_in_sync,
                           "mixed_precision": config.training.mixed_precision or "float32",
                           "epochs": len(history.epoch), "first_epoch": history.epoch[0] if history.epoch else None,
                           "task_weights": weights.history,
                           "eval": {k: float(v) for k, v in final.items()},
                           "metrics": {k: [float(v) for v in values] for k, values in history.history.items()}}


def side_by_side(networks: Dict[str, keras.Model]) -> keras.Model:
    """One model whose output `task` comes from `networks[task]`, for exporting single-task models."""
    inputs = {}
    for network in networks.values():
        for tensor in network.inputs:
            name = tensor.name.split(":")[0]
            inputs.setdefault(name, keras.Input(shape=tensor.shape[1:], dtype=tensor.dtype, name=name))
    outputs = {}
    for task, network in networks.items():
        own_inputs = {n.name.split(":")[0]: inputs[n.name.split(":")[0]] for n in network.inputs}
        # Wrapped under a name of its own: every baseline of a two-tower config is named two_tower.
        own = keras.Model(own_inputs, network(own_inputs), name=f"{task}_single_task")(own_inputs)
        if task in own:
            outputs[task] = keras.layers.Identity(name=task)(own[task])
    return keras.Model(inputs, outputs, name="single_task_models")


def export_serving_model(network: keras.Model, tft_output: tft.TFTransformOutput, config: PipelineConfig,
                         export_dir: str, items: Optional[Dict[str, np.ndarray]] = None) -> None:
    """Saves `network` with the Transform graph and the serving signatures (see module docstring)."""
    network.tft_layer = tft_output.transform_features_layer()
    raw_spec = {name: spec for name, spec in tft_output.raw_feature_spec().items() if name in config.features.names}

    def predict(raw_features):
        outputs = network(network.tft_layer(raw_features))
        # Keras returns a lone output bare; TFMA and clients need {task: scores} whatever the count.
        return outputs if isinstance(outputs, dict) else {network.output_names[0]: outputs}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve_examples(serialized):
        return predict(tf.io.parse_example(serialized, raw_spec))

    @tf.function(input_signature=[{name: tf.TensorSpec([None], spec.dtype, name=name) for name, spec in raw_spec.items()}])
    def serve_raw(features):
        return predict({name: tf.reshape(value, [-1, 1]) for name, value in features.items()})

    scored = [t.name for t in config.tasks if t.type != RETRIEVAL and t.name in network.output_names]
    rank_spec = {**{name: tf.TensorSpec([None], spec.dtype, name=name) for name, spec in raw_spec.items()},
                 **{WEIGHT_PREFIX + task: tf.TensorSpec([], tf.float32, name=WEIGHT_PREFIX + task) for task in scored}}

    @tf.function(input_signature=[rank_spec])
    def rank(inputs):
        """Task scores and their blend sum(weight_<task> * score), computed in the serving graph."""
        outputs = predict({name: tf.reshape(inputs[name], [-1, 1]) for name in raw_spec})
        scores = {task: outputs[task] for task in scored}
        blend = tf.add_n([inputs[WEIGHT_PREFIX + task] * tf.reshape(scores[task], [-1]) for task in scored])
        return {**scores, BLEND_OUTPUT: blend}

    evaluated = [t.name for t in config.evaluated_tasks]

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def evaluate(serialized):
        """What TFMA measures: the evaluated tasks, the same outputs for every model it compares."""
        outputs = predict(tf.io.parse_example(serialized, raw_spec))
        return {task: outputs[task] for task in evaluated}

    signatures = {SERVING_DEFAULT: serve_examples.get_concrete_function(),
                  SERVING_RAW: serve_raw.get_concrete_function(),
                  EVALUATE: evaluate.get_concrete_function()}
    if scored:
        signatures[RANK] = rank.get_concrete_function()
    if items is not None:
        signatures[RETRIEVE] = _retrieve_signature(network, tft_output, config, raw_spec, items)
    network.save(export_dir, save_format="tf", signatures=signatures)


def _retrieve_signature(network, tft_output, config, raw_spec, items):
    """Top-K raw item ids and scores for raw query features, over every known item."""
    query_tower, item_tower = network.get_layer(QUERY_TOWER), network.get_layer(ITEM_TOWER)
    vocabulary = tft_output.vocabulary_by_name("item_id")
    known = items["item_id"][:, 0] < len(vocabulary)  # OOV buckets have no raw id to return
    candidates = {name: values[known] for name, values in items.items()}
    network.retrieval_index = tfrs.layers.factorized_top_k.BruteForce(k=max(TOP_K))
    network.retrieval_index.index(item_tower(candidates, training=False),
                                  identifiers=tf.constant([vocabulary[i] for i in candidates["item_id"][:, 0]]))
    query_spec = {n: s for n, s in raw_spec.items() if n in config.model.query_features}

    @tf.function(input_signature=[{name: tf.TensorSpec([None], spec.dtype, name=name) for name, spec in query_spec.items()}])
    def retrieve(features):
        batch = tf.shape(next(iter(features.values())))[0]
        raw = {name: tf.reshape(features[name], [-1, 1]) if name in features
               else tf.fill([batch, 1], tf.constant("" if spec.dtype == tf.string else 0, spec.dtype))
               for name, spec in raw_spec.items()}  # item-side inputs are unused by the query tower
        transformed = network.tft_layer(raw)
        query = query_tower({n: transformed[n] for n in query_tower.input_names})
        scores, item_ids = network.retrieval_index(query)
        return {"scores": scores, "item_ids": item_ids}

    return retrieve.get_concrete_function()


def _write_json(directory: str, name: str, value) -> None:
    tf.io.gfile.makedirs(directory)
    with tf.io.gfile.GFile(os.path.join(directory, name), "w") as f:
        f.write(json.dumps(value, indent=1))


def run_fn(fn_args) -> None:
    """TFX Trainer entry point. In a multi-worker cluster every worker runs it (TF_CONFIG tells
    them apart): all train and save, only the chief writes the model and logs."""
    config = PipelineConfig.from_json(fn_args.custom_config["config"])
    # Devices and collectives first: both must be set up before TensorFlow's runtime starts.
    distribution.configure_logical_cpus(config.training.logical_cpu_devices)
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
    make = lambda files, shuffle: dataset(files, fn_args.data_accessor, tft_output, config, shuffle,  # noqa: E731
                                          replicas=replicas)
    train_data, eval_data = make(fn_args.train_files, True), make(fn_args.eval_files, False)
    sizes = vocab_sizes(config, tft_output)
    retrieval = [t for t in config.tasks if t.type == RETRIEVAL]
    probability = item_frequencies(train_data, sizes["item_id"]) if retrieval else None
    backup_root = distribution.backup_dir(config.training, fn_args.model_run_dir,
                                          json.dumps([fn_args.custom_config, sorted(fn_args.train_files)], sort_keys=True))

    runs = ({t.name: single_task_config(config, t) for t in config.tasks} if single_task else {"": config})
    networks, logs, retrieval_logs = {}, {}, {}
    for name, run_config in runs.items():
        log_dir = (os.path.join(fn_args.model_run_dir, name) if name else fn_args.model_run_dir) if chief else None
        networks[name], logs[name] = train(run_config, train_data, eval_data, sizes, log_dir, probability, strategy,
                                           os.path.join(backup_root, name or "model"))
    items = item_table(train_data.concatenate(eval_data), _item_features(next(iter(networks.values())))) \
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
    _write_json(fn_args.model_run_dir, TRAINING_LOG, logs if single_task else logs[""])
    if retrieval:
        _write_json(fn_args.model_run_dir, RETRIEVAL_LOG, retrieval_logs)
