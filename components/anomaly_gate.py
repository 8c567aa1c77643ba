"""AnomalyGate: stops the pipeline before Transform when ExampleValidator found anomalies.

ExampleValidator in TFX 1.16 records anomalies but does not fail; this component reads them and
raises `DataAnomalyError` naming each anomalous feature, so nothing downstream trains on bad data.
"""

import os

import tensorflow as tf
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx import v1 as tfx
from tfx.types import artifact_utils


class DataAnomalyError(RuntimeError):
    """The examples do not match the schema; the message lists every anomaly per split."""


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


@tfx.dsl.components.component
def AnomalyGate(anomalies: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ExampleAnomalies]) -> None:
    found = describe_anomalies(anomalies.uri, artifact_utils.decode_split_names(anomalies.split_names))
    if found:
        lines = "\n".join(f"  [{split}] {feature}: {text}" for split, feature, text in found)
        raise DataAnomalyError(f"the examples violate the schema; stopping before Transform and Trainer:\n{lines}")
