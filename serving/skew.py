"""Serving skew: what the served model is asked, against what it was trained on.

Reads the request log (`mtrec.serving.request_log`: TF Serving's `PredictionLog` records), turns
each request's raw inputs into rows, computes their TFDV statistics and compares them with the
training statistics (StatisticsGen's train split) through TFDV's skew comparators: L-infinity
for string features, Jensen-Shannon divergence for numbers, the drift thresholds of the config
(`drift`). Returns each compared feature's distance and whether it is over its threshold.
"""
from __future__ import annotations

import glob
import os
from typing import Dict, List, Optional

import pandas as pd
import tensorflow as tf
import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import schema_pb2, statistics_pb2
from tensorflow_serving.apis import prediction_log_pb2

from mtrec.components import drift
from mtrec.config import PipelineConfig
from mtrec.serving.request_log import LOG_PREFIX
from mtrec.serving.signatures import missing_value

EXAMPLES = "examples"  # the serving_default signature's input: serialized tf.Examples


def _rows(request) -> pd.DataFrame:
    """A Predict request's examples as rows: raw features (one tensor each, the signatures'
    missing-value sentinels read as missing) or serialized tf.Examples (`examples`)."""
    if list(request.inputs) == [EXAMPLES]:
        rows = []
        for serialized in tf.make_ndarray(request.inputs[EXAMPLES]).reshape(-1):
            features = tf.train.Example.FromString(serialized).features.feature
            rows.append({name: _first(f) for name, f in features.items()})
        return pd.DataFrame(rows)
    frame = pd.DataFrame({name: tf.make_ndarray(t).reshape(-1) for name, t in request.inputs.items()})
    for name in frame:
        sentinel = missing_value(tf.as_dtype(request.inputs[name].dtype))
        sentinel = sentinel.encode() if isinstance(sentinel, str) else sentinel
        missing = frame[name].isna() if isinstance(sentinel, float) else frame[name] == sentinel
        frame[name] = frame[name].where(~missing, None)
    return frame


def _first(feature: tf.train.Feature):
    values = getattr(feature, feature.WhichOneof("kind")).value if feature.WhichOneof("kind") else []
    return values[0] if len(values) else None


def read_requests(directory: str) -> pd.DataFrame:
    """One row per example of every logged Predict request, one column per input."""
    files = sorted(glob.glob(os.path.join(directory, f"{LOG_PREFIX}-*.tfrecord")))
    if not files:
        raise FileNotFoundError(f"--requests {directory}: no {LOG_PREFIX}-*.tfrecord (start `mtrec serve` with "
                                "--request-log-dir)")
    frames = []
    for record in tf.data.TFRecordDataset(files).as_numpy_iterator():
        frames.append(_rows(prediction_log_pb2.PredictionLog.FromString(record).predict_log.request))
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    for name in frame:
        if frame[name].dtype == object:  # string tensors arrive as bytes
            frame[name] = frame[name].map(lambda v: v.decode("utf-8", "replace") if isinstance(v, bytes) else v)
    return frame


def measure(serving: statistics_pb2.DatasetFeatureStatisticsList, training: statistics_pb2.DatasetFeatureStatisticsList,
            schema: schema_pb2.Schema, config: PipelineConfig) -> List[Dict]:
    """[{feature, measure, distance, threshold, skewed}] for each feature the config compares."""
    compared = drift.with_comparators(schema, config)
    for feature in compared.feature:  # the same comparators, as skew comparators
        if feature.HasField("drift_comparator"):
            feature.skew_comparator.CopyFrom(feature.drift_comparator)
            feature.ClearField("drift_comparator")
    anomalies = tfdv.validate_statistics(training, compared, serving_statistics=serving)
    return drift.measurements(anomalies, "skew_measurements", "skewed")


def skew(requests_dir: str, training: statistics_pb2.DatasetFeatureStatisticsList, schema: schema_pb2.Schema,
         config: Optional[PipelineConfig] = None) -> Dict:
    """The skew report of the logged requests against `training`."""
    config = config or PipelineConfig()
    frame = read_requests(requests_dir)
    serving = tfdv.generate_statistics_from_dataframe(frame)
    rows = measure(serving, training, schema, config)
    return {"requests_examples": int(len(frame)), "measurements": rows,
            "skewed": [r["feature"] for r in rows if r["skewed"]],
            "not_in_requests": sorted(set(drift.thresholds(config)) - set(frame.columns))}
