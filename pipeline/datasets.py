"""The Trainer's input: transformed examples as batches of (features, labels), from Transform's
written output or from the raw examples through Transform's graph."""
from __future__ import annotations

import os
from typing import Callable, Dict, Optional

import numpy as np
import tensorflow as tf
from absl import logging
from tfx.components.trainer.fn_args_utils import DataAccessor
from tfx_bsl.public import tfxio

from mtrec.config import CACHE_LIMIT_BYTES, PipelineConfig
from mtrec.transformed import presence_name

_READ_BATCH = 8192  # examples per parsed batch when reading a split into memory


def dataset(files, data_accessor, tft_output, config: PipelineConfig, shuffle: bool,
            epochs: Optional[int] = 1, replicas: int = 1, raw: bool = False) -> tf.data.Dataset:
    """(transformed features, {label name: label}) batches of the global batch size: batch_size
    per replica, from memory when `training.cache` keeps them there (`in_memory`), else streamed
    from the files. `raw`: the files hold raw examples, which go through Transform's graph (once,
    into memory; or every streamed batch). Workers of a cluster each keep their share of the
    batches (DATA sharding: the Transform output has fewer files than a cluster may have workers).
    Shuffled (training) batches have `training.id_dropout` of their ids read as unknown (`unknown_ids`)."""
    batch_size = config.training.batch_size * replicas
    columns = in_memory(files, data_accessor, tft_output, config, raw)
    if columns is not None:
        if shuffle:
            columns = canonical_order(columns)
        data = _from_memory(columns, batch_size, config.training.seed, epochs, label_splitter(config),
                            shuffle=shuffle, drop_ids=unknown_ids(config, tft_output) if shuffle else None)
    else:
        data = transformed_batches(files, data_accessor, tft_output, raw, tfxio.TensorFlowDatasetOptions(
            batch_size=batch_size, num_epochs=epochs, shuffle=shuffle, shuffle_seed=config.training.seed))
        if config.training.steps_per_execution > 1 and epochs:  # Keras must know how long an epoch
            # is to run several steps per call
            batches = -(-example_count(files) // batch_size)
            data = data.apply(tf.data.experimental.assert_cardinality(batches * epochs))
        if shuffle:
            data = with_unknown_ids(data, config, tft_output)
        data = data.map(label_splitter(config), num_parallel_calls=tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    if columns is not None:
        # Nothing to tune or prefetch in rows of memory: the step takes its batch (a slice of each
        # column) in its own thread. A prefetching thread would compete for the cores the step
        # keeps busy and make it wait for its turn (3.7% slower fits, bench/README), and
        # tf.data's autotuner would run on them too.
        options.autotune.enabled = False
        return data.with_options(options)
    return data.prefetch(tf.data.AUTOTUNE).with_options(options)


def parsed_batches(files, data_accessor, tft_output, raw: bool, options) -> tf.data.Dataset:
    """Batches parsed from `files` by the schema they were written with: Transform's output, or
    (`raw`) the raw examples, which still need Transform's graph."""
    schema = tft_output.raw_metadata.schema if raw else tft_output.transformed_metadata.schema
    return data_accessor.tf_dataset_factory(files, options, schema)


def transform_graph(tft_output, input_signature=None) -> Callable:
    """Transform's graph as a function of parsed raw batches, traced without AutoGraph.

    Called eagerly, TFT's layer prunes Transform's (TF1) graph anew on every call, 0.3 s a batch;
    traced, it prunes once, but AutoGraph's conversion of TFT's code took 5-6 s of that trace, and
    the layer has no Python control flow to convert. Reading the main job's two splits into
    memory: 10.7-12.5 s eagerly, 4.0 s so."""
    layer = tft_output.transform_features_layer()
    return tf.function(lambda features: layer(features), input_signature=input_signature, autograph=False)


def transformed_batches(files, data_accessor, tft_output, raw: bool, options) -> tf.data.Dataset:
    """Batches of transformed features read from `files`: parsed as written, or (`raw`) parsed as
    raw examples and transformed by the graph every served signature runs too."""
    parsed = parsed_batches(files, data_accessor, tft_output, raw, options)
    return parsed.map(transform_graph(tft_output), num_parallel_calls=tf.data.AUTOTUNE) if raw else parsed


def in_memory(files, data_accessor, tft_output, config: PipelineConfig,
              raw: bool = False) -> Optional[Dict[str, np.ndarray]]:
    """{feature: every example's transformed values} of `files`, parsed (and, `raw`, transformed)
    once, when `training.cache` keeps them in memory (`auto`: when they fit, see TrainingConfig);
    None to stream them from the files."""
    training = config.training
    if training.streams:
        return None
    batches = parsed_batches(files, data_accessor, tft_output, raw,
                             tfxio.TensorFlowDatasetOptions(batch_size=_READ_BATCH, num_epochs=1, shuffle=False))
    if raw:
        # Transform's graph runs on each parsed batch in this thread, traced once per split.
        batches = map(transform_graph(tft_output, [batches.element_spec]), batches)
    columns, size, limit = {}, 0, min(CACHE_LIMIT_BYTES, _memory_bytes() // 4)
    for batch in batches:
        if not all(isinstance(v, tf.Tensor) for v in batch.values()):
            logging.info("Not caching %s: it has sparse or ragged features", files)
            return None
        for name, values in batch.items():
            columns.setdefault(name, []).append(values.numpy())
            size += columns[name][-1].nbytes
        if training.cache == "auto" and size > limit:
            logging.info("Not caching %s: more than the %.0f MB limit parsed", files, limit / 2**20)
            return None
    if not columns:
        raise FileNotFoundError(f"no examples in {files}")
    return {name: np.concatenate(parts) for name, parts in columns.items()}


def canonical_order(columns: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """The rows sorted by their values' bytes: the order Beam wrote the examples in changes from
    run to run (its bundles reach the shards in any order), so drawing each pass's permutation over
    this order instead is what lets the same examples and `training.seed` train the same model
    (a daily run and its rerun, a cold and a warm start of the first day)."""
    count = len(next(iter(columns.values())))

    def row_bytes(values: np.ndarray) -> np.ndarray:
        values = values.reshape(count, -1)
        if values.dtype == object:  # strings (the text features' keys): as fixed-width bytes
            values = values.astype(bytes)
        return np.ascontiguousarray(values).view(np.uint8).reshape(count, -1)

    rows = np.ascontiguousarray(np.concatenate([row_bytes(columns[name]) for name in sorted(columns)], axis=1))
    keys = rows.view(np.dtype((np.void, rows.shape[1]))).reshape(-1)
    order = np.argsort(keys, kind="stable")
    return {name: values[order] for name, values in columns.items()}


def _from_memory(columns: Dict[str, np.ndarray], batch_size: int, seed: int, epochs: Optional[int], split,
                 shuffle: bool, drop_ids: Optional[Callable] = None) -> tf.data.Dataset:
    """`split` batches of `columns`, each pass over them in a fresh random order when shuffled.

    A pass's work is done for the whole pass at its start: one permutation (drawn in O(n), not by
    sorting n uniforms: 0.9 against 13.6 ms for the default log's 171k examples), one gather per
    feature, its id dropout drawn at once (`drop_ids`), the columns split into features and labels
    and viewed as [batches, batch_size, ...]; a batch is then the next row of each, taken by the
    dataset's own kernel with no function call per batch. On 2 cores the input pipeline shares them
    with training, so it does no per-batch work of its own."""
    count = len(next(iter(columns.values())))
    tensors = {name: tf.constant(values) for name, values in columns.items()}
    batches, full = -(-count // batch_size), count // batch_size * batch_size

    def one_pass(pass_seed):
        rows = tensors
        if shuffle:
            draw = tf.stack([pass_seed, seed])
            order = tf.random.experimental.stateless_shuffle(tf.range(count), draw)
            rows = {name: tf.gather(t, order) for name, t in rows.items()}
            if drop_ids:
                rows = drop_ids(rows, tf.random.experimental.stateless_fold_in(draw, 1))
        rows = split(rows)
        data = tf.data.Dataset.from_tensor_slices(tf.nest.map_structure(
            lambda t: tf.reshape(t[:full], [-1, batch_size, *t.shape[1:]]), rows))
        if full < count:  # the last, shorter batch
            data = data.concatenate(tf.data.Dataset.from_tensors(tf.nest.map_structure(lambda t: t[full:], rows)))
        return data

    if not shuffle:  # every pass the same: built once, so an iterator has no function to instantiate
        return one_pass(None).repeat(epochs)  # (Keras makes an iterator each evaluation: 0.6 ms, not 41)
    # A new draw each time the dataset is iterated: Keras iterates it anew every epoch.
    passes = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    data = (passes.take(epochs) if epochs else passes).flat_map(one_pass)
    return data.apply(tf.data.experimental.assert_cardinality(batches * epochs)) if epochs else data


def _memory_bytes() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def unknown_ids(config: PipelineConfig, tft_output) -> Optional[Callable]:
    """`drop(columns, seed)`: columns with `training.id_dropout` of each vocabulary id read as one
    of its OOV buckets, drawn at random (stateless, from `seed`); None when nothing is dropped.

    An id training never saw lands in an OOV bucket, so the buckets must learn what to predict for
    a new item or user from the rest of its features and its text (DropoutNet, Volkovs et al.,
    NeurIPS 2017); otherwise no training example reaches them."""
    features, rate = config.features, config.training.id_dropout
    if not (rate and features.oov_buckets and features.ids):  # hashed ids are `features.hashed`: no OOV rows
        return None
    known = {name: tft_output.vocabulary_size_by_name(name) for name in sorted(features.ids)}

    def drop(columns, seed):
        columns = dict(columns)
        for i, (name, size) in enumerate(known.items()):
            ids = columns[name]
            seeds = tf.random.experimental.stateless_split(tf.random.experimental.stateless_fold_in(seed, i), 2)
            which, bucket = seeds[0], seeds[1]
            unknown = size + tf.random.stateless_uniform(tf.shape(ids), bucket, 0, features.oov_buckets,
                                                         dtype=ids.dtype)
            columns[name] = tf.where(tf.random.stateless_uniform(tf.shape(ids), which) < rate, unknown, ids)
        return columns

    return drop


def with_unknown_ids(batches: tf.data.Dataset, config: PipelineConfig, tft_output) -> tf.data.Dataset:
    """Transformed batches with `training.id_dropout` of their ids read as unknown (`unknown_ids`),
    one seed per batch from `training.seed`: the same batches drop the same ids on one device or
    several, and on a rerun."""
    drop = unknown_ids(config, tft_output)
    if drop is None:
        return batches
    seeds = tf.data.Dataset.random(seed=config.training.seed, rerandomize_each_iteration=True).batch(2)
    return tf.data.Dataset.zip((batches, seeds)).map(drop, num_parallel_calls=tf.data.AUTOTUNE)


def record_accessor(telemetry: str = "mtrec") -> DataAccessor:
    """What TFX's Trainer hands `run_fn` for TFRecords of tf.Examples, for code that reads a
    Transform output outside the Trainer (benches, tests) through the same `dataset`."""
    def factory(files, options: tfxio.TensorFlowDatasetOptions, schema) -> tf.data.Dataset:
        return tfxio.TFExampleRecord(file_pattern=files, schema=schema,
                                     telemetry_descriptors=[telemetry]).TensorFlowDataset(options)
    return DataAccessor(tf_dataset_factory=factory, record_batch_factory=None, data_view_decode_fn=None)


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
