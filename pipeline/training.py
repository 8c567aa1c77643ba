"""Trainer's run_fn: trains the configured multi-task model and exports it for TF Serving and TFMA.

Passed to the Trainer by import path (`mtrec.pipeline.training.run_fn`) with the pipeline config as
`custom_config`. Conditional tasks (`given`) train with that label as their sample weight, so
like-given-click learns only from clicks while every impression stays in the batch.

Exported signatures, both returning {task name: [batch, 1]}:
  serving_default: serialized tf.Example (`examples`) -> parsed -> Transform graph -> model.
  serving_raw: one [batch] tensor per raw feature -> Transform graph -> model.
"""
from __future__ import annotations

from typing import Dict

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras
from absl import logging
from tfx_bsl.public import tfxio

from mtrec.config import BINARY, PipelineConfig
from mtrec.models import build_model
from mtrec.pipeline.preprocessing import bucket_name

SERVING_DEFAULT = "serving_default"
SERVING_RAW = "serving_raw"


def _vocab_sizes(config: PipelineConfig, tft_output: tft.TFTransformOutput) -> Dict[str, int]:
    features = config.features
    sizes = {name: tft_output.vocabulary_size_by_name(name) + features.oov_buckets
             for name in features.ids + features.categorical}
    sizes.update({bucket_name(name): features.numeric_buckets + 1 for name in features.numeric})
    return sizes


def _dataset(files, data_accessor, tft_output, config: PipelineConfig, shuffle: bool) -> tf.data.Dataset:
    """(transformed features, {task: label}, {task: sample weight}) batches, one pass over `files`."""
    dataset = data_accessor.tf_dataset_factory(
        files, tfxio.TensorFlowDatasetOptions(batch_size=config.training.batch_size, num_epochs=1, shuffle=shuffle,
                                              shuffle_seed=config.training.seed),
        tft_output.transformed_metadata.schema)
    labels = set(config.label_keys)

    def split(batch):
        features = {k: v for k, v in batch.items() if k not in labels}
        targets = {t.name: batch[t.label] for t in config.tasks}
        weights = {t.name: batch[t.given] if t.given else tf.ones_like(batch[t.label]) for t in config.tasks}
        return features, targets, weights

    return dataset.map(split, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def build_compiled_model(config: PipelineConfig, vocab_sizes: Dict[str, int]) -> keras.Model:
    model = build_model(config.model.architecture, vocab_sizes, config.features.numeric, config.tasks, config.model)
    model.compile(
        optimizer=keras.optimizers.Adam(config.training.learning_rate),
        loss={t.name: t.loss for t in config.tasks},
        loss_weights={t.name: t.weight for t in config.tasks},
        weighted_metrics={t.name: [keras.metrics.AUC(name="auc")] if t.type == BINARY
                          else [keras.metrics.RootMeanSquaredError(name="rmse")] for t in config.tasks})
    return model


def export_serving_model(model: keras.Model, tft_output: tft.TFTransformOutput, config: PipelineConfig,
                         export_dir: str) -> None:
    """Saves `model` with the Transform graph and both serving signatures."""
    model.tft_layer = tft_output.transform_features_layer()
    raw_spec = {name: spec for name, spec in tft_output.raw_feature_spec().items() if name in config.features.names}

    def predict(raw_features):
        return model(model.tft_layer(raw_features))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve_examples(serialized):
        return predict(tf.io.parse_example(serialized, raw_spec))

    @tf.function(input_signature=[{name: tf.TensorSpec([None], spec.dtype, name=name) for name, spec in raw_spec.items()}])
    def serve_raw(features):
        return predict({name: tf.reshape(value, [-1, 1]) for name, value in features.items()})

    model.save(export_dir, save_format="tf", signatures={
        SERVING_DEFAULT: serve_examples.get_concrete_function(),
        SERVING_RAW: serve_raw.get_concrete_function(),
    })


def run_fn(fn_args) -> None:
    """TFX Trainer entry point."""
    config = PipelineConfig.from_json(fn_args.custom_config["config"])
    keras.utils.set_random_seed(config.training.seed)
    tft_output = tft.TFTransformOutput(fn_args.transform_output)
    train = _dataset(fn_args.train_files, fn_args.data_accessor, tft_output, config, shuffle=True)
    evaluation = _dataset(fn_args.eval_files, fn_args.data_accessor, tft_output, config, shuffle=False)
    model = build_compiled_model(config, _vocab_sizes(config, tft_output))
    logging.info("Training %s on tasks %s", config.model.architecture, [t.name for t in config.tasks])
    model.fit(train, validation_data=evaluation, epochs=config.training.epochs, verbose=2, callbacks=[
        keras.callbacks.EarlyStopping(patience=config.training.patience, restore_best_weights=True),
        keras.callbacks.TensorBoard(log_dir=fn_args.model_run_dir, update_freq="epoch")])
    export_serving_model(model, tft_output, config, fn_args.serving_model_dir)
