"""The best any model could do on the eval split: AUC of the generator's true probabilities.

Synthetic logs carry `oracle.csv` (true click, like-given-click and purchase-given-click
probabilities, expected dwell). Scored on the same eval examples and with the same task weights as
the Evaluator, the oracle AUC is the ceiling that a model's AUC is compared against.
"""
from __future__ import annotations

import os
from typing import Dict

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
    oracle = read_oracle(oracle_path)
    tasks = [t for t in config.tasks if t.type == BINARY and t.label in oracle]
    if not tasks:
        return {}
    eval_split = read_split(examples_uri, "eval", config.label_keys)
    ids = eval_split["impression_id"]
    order = np.argsort(oracle["impression_id"])
    index = order[np.minimum(np.searchsorted(oracle["impression_id"], ids, sorter=order), len(order) - 1)]
    if not np.array_equal(oracle["impression_id"][index], ids):
        logging.warning("%s does not cover every eval impression; no oracle AUC reported", oracle_path)
        return {}
    result = {}
    for task in tasks:
        weight = eval_split[task.given] if task.given else None
        result[task.name] = float(roc_auc_score(eval_split[task.label], oracle[task.label][index], sample_weight=weight))
    return result
