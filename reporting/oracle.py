"""The best any model could do on the eval split: AUC of the generator's true probabilities.

Synthetic logs carry `oracle.csv` (true click, like-given-click and purchase-given-click
probabilities, a positive review given one, expected dwell). Scored on the same eval examples and with the same task weights as
the Evaluator, the oracle AUC is the ceiling that a model's AUC is compared against.
"""
from __future__ import annotations

import os
from typing import Dict, Optional, Set

import numpy as np
from absl import logging
import tensorflow as tf
from sklearn.metrics import roc_auc_score

from mtrec.config import BINARY, PipelineConfig
from mtrec.data.synthetic import read_oracle


def read_split(examples_uri: str, split: str, keys) -> Dict[str, np.ndarray]:
    """Columns `keys` and `impression_id` of one split of an Examples artifact (one value each)."""
    columns = {k: [] for k in ["impression_id", *keys]}
    files = tf.io.gfile.glob(os.path.join(examples_uri, f"Split-{split}", "*"))
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP").as_numpy_iterator():
        feature = tf.train.Example.FromString(record).features.feature
        for key, values in columns.items():
            values.append(_single_value(feature[key]) if key in feature else float("nan"))
    columns["impression_id"] = [v.decode() for v in columns["impression_id"]]
    return {k: np.asarray(v) for k, v in columns.items()}


def _single_value(feature: tf.train.Feature):
    kind = feature.WhichOneof("kind")  # None: the example has no value for it
    values = getattr(feature, kind).value if kind else []
    return values[0] if len(values) else float("nan")


def oracle_auc(examples_uri: str, oracle_path: str, config: PipelineConfig) -> Dict[str, float]:
    """{binary task: oracle AUC on the eval split}, for tasks whose label the oracle knows."""
    return oracle_aucs(examples_uri, oracle_path, config)["overall"]


def oracle_aucs(examples_uri: str, oracle_path: str, config: PipelineConfig,
                trained_items: Optional[Set[str]] = None) -> Dict[str, Dict[str, float]]:
    """{"overall": {task: oracle AUC}, "cold_start": {task: oracle AUC}} from one read of the eval
    split; the cold-start slice (impressions of items not in `trained_items`) only when given."""
    result = {"overall": {}, "cold_start": {}}
    oracle = read_oracle(oracle_path)
    tasks = [t for t in config.tasks if t.type == BINARY and t.label in oracle]
    if not tasks:
        return result
    item_key = config.features.cold_start_key
    eval_split = read_split(examples_uri, "eval", config.label_keys + ([item_key] if trained_items is not None else []))
    ids = eval_split["impression_id"]
    order = np.argsort(oracle["impression_id"])
    index = order[np.minimum(np.searchsorted(oracle["impression_id"], ids, sorter=order), len(order) - 1)]
    if not np.array_equal(oracle["impression_id"][index], ids):
        logging.warning("%s does not cover every eval impression; no oracle AUC reported", oracle_path)
        return result
    subsets = {"overall": np.ones(len(ids), bool)}
    if trained_items is not None:  # an impression without an item id is cold too, as in the model
        subsets["cold_start"] = np.array([not isinstance(item, bytes) or item.decode() not in trained_items
                                          for item in eval_split[item_key]])
    for subset, kept in subsets.items():
        for task in tasks:
            labels = eval_split[task.label][kept]
            weight = eval_split[task.given][kept] if task.given else np.ones(len(labels))
            weight = np.where(np.isnan(labels), 0.0, weight)  # a missing label weighs 0, as in the Evaluator
            labels = np.nan_to_num(labels)
            if len(np.unique(labels[weight > 0])) == 2:  # an AUC needs both classes
                result[subset][task.name] = float(roc_auc_score(labels, oracle[task.label][index][kept],
                                                                sample_weight=weight))
    return result
