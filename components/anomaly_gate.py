"""AnomalyGate: stops the pipeline before Transform when the examples do not fit the schema or
the config, or (daily logs) drifted from the previous span beyond the config's thresholds.

ExampleValidator in TFX 1.16 records anomalies but does not fail; this component reads them,
and checks the data against the config (`mtrec.components.data_check`), and raises
`DataAnomalyError` naming each feature and problem, so nothing downstream trains on bad data and
no problem first appears after training.
"""

import json
import os

import tensorflow as tf
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx.dsl.component.experimental.annotations import InputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import artifact_utils
from tfx.types.standard_artifacts import ExampleAnomalies, ExampleStatistics, Schema

from mtrec.components import data_check


class DataAnomalyError(RuntimeError):
    """The examples do not match the schema or the config; the message lists every problem.
    `drift` holds the drift measurements (`mtrec.components.drift.measure`), if any were taken."""

    drift: list = []


def describe_anomalies(anomalies_uri: str, split_names) -> list:
    """[(split, feature, description)] for every anomaly recorded by ExampleValidator."""
    found = []
    for split in split_names:
        path = os.path.join(anomalies_uri, f"Split-{split}", "SchemaDiff.pb")
        if not tf.io.gfile.exists(path):
            continue
        anomalies = anomalies_pb2.Anomalies.FromString(tf.io.gfile.GFile(path, "rb").read())
        for feature, info in sorted(anomalies.anomaly_info.items()):
            found.append((split, feature, info.description or info.short_description))
        if anomalies.HasField("dataset_anomaly_info"):
            found.append((split, "<dataset>", anomalies.dataset_anomaly_info.description))
    return found


@component
def AnomalyGate(anomalies: InputArtifact[ExampleAnomalies], statistics: InputArtifact[ExampleStatistics],
                schema: InputArtifact[Schema], config: Parameter[str], source: Parameter[str] = "",
                drift: Parameter[str] = "{}", previous_statistics: InputArtifact[ExampleStatistics] = None) -> None:
    """`previous_statistics`: the previous span's (daily logs), compared with `drift`'s thresholds."""
    from mtrec.components import drift as drift_check
    from mtrec.components.spans import span_date
    from mtrec.config import PipelineConfig

    found = describe_anomalies(anomalies.uri, artifact_utils.decode_split_names(anomalies.split_names))
    lines = [f"  [{split}] {feature}: {text}" for split, feature, text in found]
    parsed = data_check.load_schema(schema.uri)
    train = data_check.load_statistics(statistics.uri, "train")
    checked = PipelineConfig.from_dict({**json.loads(config), "drift": json.loads(drift)})
    lines += [f"  {problem}" for problem in data_check.problems(checked, parsed, train, source or "the examples")]
    measured = []
    if previous_statistics is not None and checked.drift.gate:
        measured = drift_check.measure(train, data_check.load_statistics(previous_statistics.uri, "train"), parsed,
                                       checked)
        since = span_date(previous_statistics.span or 0)
        lines += [f"  {row['feature']}: drifted since span {since}: {row['measure']} distance {row['distance']:.3f} > "
                  f"threshold {row['threshold']:g} (drift.features.{row['feature']} sets it)"
                  for row in measured if row["drifted"]]
    if lines:
        error = DataAnomalyError("the examples do not fit the schema or the config; stopping before Transform and "
                                 "Trainer:\n" + "\n".join(lines))
        error.drift = measured
        raise error
