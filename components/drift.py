"""Drift between a span's statistics and the previous span's, with TFDV's drift comparators.

The config's thresholds (`mtrec.config.DriftConfig`) become drift comparators on the schema the
pipeline validates against (L-infinity for categorical features, Jensen-Shannon divergence for
numeric ones), and `tfdv.validate_statistics(..., previous_statistics=...)` measures every
compared feature: what AnomalyGate stops on and what the run history reports.
"""
from __future__ import annotations

from typing import Dict, List

import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import schema_pb2, statistics_pb2

from mtrec.components.data_check import feature_stats
from mtrec.config import PipelineConfig


def thresholds(config: PipelineConfig) -> Dict[str, float]:
    """{feature: threshold} of the compared features (categoricals, numerics; not ids)."""
    drift = config.drift
    out = {name: drift.categorical for name in config.features.categorical}
    out.update({name: drift.numeric for name in config.features.numeric})
    out.update(drift.features)
    return {name: value for name, value in out.items() if value > 0}


def with_comparators(schema: schema_pb2.Schema, config: PipelineConfig) -> schema_pb2.Schema:
    """A copy of `schema` with the config's drift comparator on each compared feature: L-infinity
    over a string feature's values, Jensen-Shannon over a number's histogram (int-coded
    categoricals too: TFDV's L-infinity reads string values only)."""
    schema = schema_pb2.Schema.FromString(schema.SerializeToString())
    limits = thresholds(config)
    for feature in schema.feature:
        if feature.name not in limits:
            continue
        if feature.type != schema_pb2.BYTES:
            feature.drift_comparator.jensen_shannon_divergence.threshold = limits[feature.name]
        else:
            feature.drift_comparator.infinity_norm.threshold = limits[feature.name]
    return schema


def measure(statistics: statistics_pb2.DatasetFeatureStatisticsList,
            previous: statistics_pb2.DatasetFeatureStatisticsList, schema: schema_pb2.Schema,
            config: PipelineConfig) -> List[Dict]:
    """Every compared feature's distance to the previous span: [{feature, measure, distance,
    threshold, drifted}], by feature."""
    anomalies = tfdv.validate_statistics(statistics, with_comparators(schema, config), previous_statistics=previous)
    return measurements(anomalies, "drift_measurements", "drifted")


def measurements(anomalies, field: str, flag: str) -> List[Dict]:
    """TFDV's drift or skew measurements (`field` of each DriftSkewInfo) as rows, by feature:
    {feature, measure, distance, threshold, `flag`: over the threshold}."""
    rows = [{"feature": ".".join(info.path.step), "measure": MEASURES.get(m.type, str(m.type)),
             "distance": round(m.value, 4), "threshold": m.threshold, flag: m.value > m.threshold}
            for info in anomalies.drift_skew_info for m in getattr(info, field)]
    return sorted(rows, key=lambda r: r["feature"])


def label_rates(statistics: statistics_pb2.DatasetFeatureStatisticsList, config: PipelineConfig) -> Dict[str, float]:
    """{binary label: its mean} in one split's statistics, for the history (reported, not gated)."""
    stats = feature_stats(statistics)
    return {t.label: round(stats[t.label].num_stats.mean, 4) for t in config.evaluated_tasks
            if t.type == "binary" and t.label in stats and stats[t.label].HasField("num_stats")}


MEASURES = {1: "L-infinity", 2: "Jensen-Shannon", 3: "normalized absolute difference"}  # DriftSkewInfo.Measurement.Type
