"""The exported SavedModel: the network behind the Transform graph, with the signatures clients,
TF Serving and TFMA call. Every signature returns {task: [batch, 1]} (plus embeddings for
two-tower models):

  serving_default: serialized tf.Example (`examples`) -> parsed -> Transform graph -> model.
  serving_raw: one [batch] tensor per raw feature -> Transform graph -> model (rank candidates).
  rank: raw features + a scalar `weight_<task>` per scored task -> task scores and their blend `score`.
  evaluate: like serving_default, only the TFMA-evaluated tasks (what the Evaluator calls).
  transform_features: serialized tf.Example -> each evaluated task's label (0 where missing),
    `<task>__weight` (0 where its label is missing) and, where items have ids, `cold_start` (1 for
    an item no training example had): TFMA's labels, example weights and cold-start slice.
  retrieve (two-tower models): raw query features -> top-100 `item_ids` and `scores` per query.

Missing values: a tf.Example may leave any optional feature out; the raw-tensor signatures take
the sentinels of `mtrec.serving.signatures` (empty string, NaN, int64 minimum) and hand the
Transform graph what the schema says: an optional feature becomes a sparse tensor without those rows.
"""
from __future__ import annotations

from typing import Dict, Optional

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs
import tensorflow_transform as tft
import tf_keras as keras

from mtrec.config import PipelineConfig
from mtrec.models.multitask import example_weight
from mtrec.models.two_tower import ITEM_TOWER, QUERY_TOWER
from mtrec.pipeline.preprocessing import as_category, label_outputs, with_missing
from mtrec.pipeline.retrieval import TOP_K
from mtrec.serving.signatures import (BLEND_OUTPUT, EVALUATE, RANK, RETRIEVE, SERVING_DEFAULT, SERVING_RAW,
                                     TRANSFORM_FEATURES, WEIGHT_PREFIX, missing_value)
from mtrec.transformed import COLD_START, weight_name


def _signature(input_signature):
    """A signature's tf.function, traced without AutoGraph: nothing in them branches on tensors, and
    AutoGraph would convert every Keras layer's call while tracing (most of the export's time)."""
    return tf.function(input_signature=input_signature, autograph=False)


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


def raw_columns(features: Dict[str, tf.Tensor], raw_spec) -> Dict[str, tf.Tensor]:
    """[batch] tensors -> what the Transform graph takes: the schema's shape for a feature always
    present ([batch] or [batch, 1]), a SparseTensor without the missing rows for an optional one."""
    columns = {}
    for name, value in features.items():
        column = tf.reshape(value, [-1, 1])
        if not isinstance(raw_spec[name], tf.io.VarLenFeature):
            columns[name] = tf.reshape(value, [-1, *raw_spec[name].shape])
        else:
            _, missing = with_missing(column)
            keep = tf.logical_not(missing)
            columns[name] = tf.SparseTensor(indices=tf.where(keep), values=tf.boolean_mask(column, keep),
                                            dense_shape=tf.cast(tf.shape(column), tf.int64))
    return columns


def export_serving_model(network: keras.Model, tft_output: tft.TFTransformOutput, config: PipelineConfig,
                         export_dir: str, items: Optional[Dict[str, np.ndarray]] = None) -> None:
    """Saves `network` with the Transform graph and the serving signatures (see module docstring)."""
    network.tft_layer = tft_output.transform_features_layer()
    full_spec = tft_output.raw_feature_spec()
    raw_spec = {name: spec for name, spec in full_spec.items() if name in config.raw_feature_names}
    label_spec = {name: spec for name, spec in full_spec.items() if name in config.label_keys}
    raw_inputs = {name: tf.TensorSpec([None], spec.dtype, name=name) for name, spec in raw_spec.items()}

    @tf.function(autograph=False)  # one trace, which every signature that predicts calls
    def predict(raw_features):
        outputs = network(network.tft_layer(raw_features))
        # Keras returns a lone output bare; TFMA and clients need {task: scores} whatever the count.
        return outputs if isinstance(outputs, dict) else {network.output_names[0]: outputs}

    @_signature([tf.TensorSpec([None], tf.string, name="examples")])
    def serve_examples(serialized):
        return predict(tf.io.parse_example(serialized, raw_spec))

    @_signature([raw_inputs])
    def serve_raw(features):
        return predict(raw_columns(features, raw_spec))

    scored = [t.name for t in config.evaluated_tasks if t.name in network.output_names]
    rank_spec = {**raw_inputs,
                 **{WEIGHT_PREFIX + task: tf.TensorSpec([], tf.float32, name=WEIGHT_PREFIX + task) for task in scored}}

    @_signature([rank_spec])
    def rank(inputs):
        """Task scores and their blend sum(weight_<task> * score), computed in the serving graph."""
        outputs = predict(raw_columns({name: inputs[name] for name in raw_spec}, raw_spec))
        scores = {task: outputs[task] for task in scored}
        blend = tf.add_n([inputs[WEIGHT_PREFIX + task] * tf.reshape(scores[task], [-1]) for task in scored])
        return {**scores, BLEND_OUTPUT: blend}

    evaluated = config.evaluated_tasks

    @_signature([tf.TensorSpec([None], tf.string, name="examples")])
    def evaluate(serialized):
        """What TFMA measures: the evaluated tasks, the same outputs for every model it compares."""
        outputs = predict(tf.io.parse_example(serialized, raw_spec))
        return {task.name: outputs[task.name] for task in evaluated}

    cold_key = config.features.cold_start_key
    if cold_key:  # the ids training saw: Transform's vocabulary, analysed on the train split
        network.trained_items = tf.lookup.StaticHashTable(tf.lookup.TextFileInitializer(
            tft_output.vocabulary_file_by_name(cold_key), tf.string, tf.lookup.TextFileIndex.WHOLE_LINE,
            tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER), default_value=-1)
        label_spec = {**label_spec, cold_key: full_spec[cold_key]}

    @_signature([tf.TensorSpec([None], tf.string, name="examples")])
    def transform_features(serialized):
        """Labels as trained on (0 where missing), per-task example weights (0 where the label is
        missing) and `cold_start` (1 where the item was in no training example): TFMA's labels,
        weights and cold-start slice."""
        parsed = tf.io.parse_example(serialized, label_spec)  # no Transform graph needed
        labels = label_outputs(parsed, config)
        outputs = {**{label: labels[label] for label in config.label_keys},
                   **{weight_name(t.name): example_weight(t, labels) for t in evaluated}}
        if cold_key:
            unseen = network.trained_items.lookup(as_category(parsed[cold_key])) < 0
            outputs[COLD_START] = tf.cast(unseen, tf.int64)
        return outputs

    signatures = {SERVING_DEFAULT: serve_examples.get_concrete_function(),
                  SERVING_RAW: serve_raw.get_concrete_function(),
                  EVALUATE: evaluate.get_concrete_function(),
                  TRANSFORM_FEATURES: transform_features.get_concrete_function()}
    if scored:
        signatures[RANK] = rank.get_concrete_function()
    if items is not None:
        signatures[RETRIEVE] = _retrieve_signature(network, tft_output, config, raw_spec, items)
    # Without each layer's traced call functions: TF Serving, TFMA and our clients use the signatures,
    # and the layers' configs still let Keras load the model.
    network.save(export_dir, save_format="tf", signatures=signatures, save_traces=False)


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

    @_signature([{name: tf.TensorSpec([None], spec.dtype, name=name) for name, spec in query_spec.items()}])
    def retrieve(features):
        batch = tf.shape(next(iter(features.values())))[0]
        raw = {name: features[name] if name in features
               else tf.fill([batch], tf.constant(missing_value(spec.dtype), spec.dtype))
               for name, spec in raw_spec.items()}  # item-side inputs are unused by the query tower
        transformed = network.tft_layer(raw_columns(raw, raw_spec))
        query = query_tower({n: transformed[n] for n in query_tower.input_names})
        scores, item_ids = network.retrieval_index(query)
        return {"scores": scores, "item_ids": item_ids}

    return retrieve.get_concrete_function()
