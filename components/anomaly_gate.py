"""AnomalyGate: stops the pipeline before Transform when the examples do not fit the schema or
the config.

ExampleValidator in TFX 1.16 records anomalies but does not fail; this component reads them,
and checks the data against the config (`mtrec.components.data_check`), and raises
`DataAnomalyError` naming each feature and problem, so nothing downstream trains on bad data and
no problem first appears after training.
"""

import os

import tensorflow as tf
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2
from tfx import v1 as tfx
from tfx.types import artifact_utils
from tfx.utils import io_utils

from mtrec.components import data_check


class DataAnomalyError(RuntimeError):
    """The examples do not match the schema or the config; the message lists every problem."""


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
def AnomalyGate(anomalies: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ExampleAnomalies],
                statistics: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ExampleStatistics],
                schema: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Schema],
                config: tfx.dsl.components.Parameter[str], source: tfx.dsl.components.Parameter[str] = "") -> None:
    from mtrec.config import PipelineConfig

    found = describe_anomalies(anomalies.uri, artifact_utils.decode_split_names(anomalies.split_names))
    lines = [f"  [{split}] {feature}: {text}" for split, feature, text in found]
    parsed = io_utils.parse_pbtxt_file(os.path.join(schema.uri, "schema.pbtxt"), schema_pb2.Schema())
    train = data_check.load_statistics(statistics.uri, "train")
    lines += [f"  {problem}" for problem in data_check.problems(PipelineConfig.from_json(config), parsed, train,
                                                                source or "the examples")]
    if lines:
        raise DataAnomalyError("the examples do not fit the schema or the config; stopping before Transform and "
                               "Trainer:\n" + "\n".join(lines))
