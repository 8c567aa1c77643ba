"""The Trainer's input: Transform's output as batches of (features, labels)."""
from __future__ import annotations

from typing import Optional

import numpy as np
import tensorflow as tf
from tfx_bsl.public import tfxio

from mtrec.config import PipelineConfig
from mtrec.transformed import presence_name


def dataset(files, data_accessor, tft_output, config: PipelineConfig, shuffle: bool,
            epochs: Optional[int] = 1, replicas: int = 1) -> tf.data.Dataset:
    """(transformed features, {label name: label}) batches of the global batch size: batch_size
    per replica. Workers of a cluster each keep their share of the batches (DATA sharding: the
    Transform output has fewer files than a cluster may have workers). Shuffled (training) batches
    have `training.id_dropout` of their ids read as unknown (`with_unknown_ids`)."""
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
    if shuffle:
        data = with_unknown_ids(data, config, tft_output)
    return (data.map(label_splitter(config), num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
            .with_options(options))


def with_unknown_ids(batches: tf.data.Dataset, config: PipelineConfig, tft_output) -> tf.data.Dataset:
    """Transformed batches with `training.id_dropout` of each vocabulary id read as one of its
    OOV buckets, drawn at random: an id training never saw lands in one of them, so they must learn
    what to predict for a new item or user from the rest of its features and its text (DropoutNet,
    Volkovs et al., NeurIPS 2017); otherwise no training example reaches them. The draws are
    stateless, one seed per batch from `training.seed`: the same batches drop the same ids on one
    device or several."""
    features, rate = config.features, config.training.id_dropout
    if not (rate and features.oov_buckets and features.ids):  # hashed ids are `features.hashed`: no OOV rows
        return batches
    known = {name: tft_output.vocabulary_size_by_name(name) for name in sorted(features.ids)}

    def drop(batch, seed):
        batch = dict(batch)
        for i, (name, size) in enumerate(known.items()):
            ids = batch[name]
            seeds = tf.random.experimental.stateless_split(tf.random.experimental.stateless_fold_in(seed, i), 2)
            which, bucket = seeds[0], seeds[1]
            unknown = size + tf.random.stateless_uniform(tf.shape(ids), bucket, 0, features.oov_buckets,
                                                         dtype=ids.dtype)
            batch[name] = tf.where(tf.random.stateless_uniform(tf.shape(ids), which) < rate, unknown, ids)
        return batch

    seeds = tf.data.Dataset.random(seed=config.training.seed, rerandomize_each_iteration=True).batch(2)
    return tf.data.Dataset.zip((batches, seeds)).map(drop, num_parallel_calls=tf.data.AUTOTUNE)


def example_count(files) -> int:
    """Records in `files` (TFRecord patterns, gzipped or not), counted without parsing them."""
    paths = sorted(p for pattern in ([files] if isinstance(files, str) else files) for p in tf.io.gfile.glob(pattern))
    if not paths:
        raise FileNotFoundError(f"no examples match {files}")
    compression = "GZIP" if paths[0].endswith(".gz") else ""
    return int(tf.data.TFRecordDataset(paths, compression_type=compression).reduce(np.int64(0), lambda n, _: n + 1))


def label_keys(config: PipelineConfig) -> set:
    """The transformed features that are labels: each label and its presence."""
    return set(config.label_keys) | {presence_name(label) for label in config.label_keys}


def label_splitter(config: PipelineConfig):
    """batch -> (features, {label name: label}): what `MultiTaskModel` trains and evaluates on."""
    labels = label_keys(config)

    def split(batch):
        return {k: v for k, v in batch.items() if k not in labels}, {k: v for k, v in batch.items() if k in labels}

    return split
