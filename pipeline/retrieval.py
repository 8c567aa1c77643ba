"""Retrieval tasks in the Trainer: the candidate catalogue, item frequencies for TFRS's sampling
correction, and top-K accuracy over every item."""
from __future__ import annotations

from typing import Dict

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs
import tf_keras as keras

from mtrec.config import TaskConfig
from mtrec.models.multitask import example_weight
from mtrec.models.two_tower import ITEM_TOWER, QUERY_TOWER

TOP_K = (1, 10, 50, 100)


def item_features(network: keras.Model):
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
        weight = tf.reshape(example_weight(task, labels), [-1]) if task.given else None
        metric.update_state(query, true, sample_weight=weight)
    return {f"top_{k}": float(v.numpy()) for k, v in zip(TOP_K, metric.result())}
