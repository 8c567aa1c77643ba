"""Checks the data against the config before Transform: what Transform, training or the export
would otherwise hit late (after training, or as a TensorFlow stack trace).

Reads what StatisticsGen and the schema already know, so it costs no pass over the data:
  - every configured feature and label is a column of the data;
  - its type fits its treatment (numeric needs numbers; categorical and hashed take strings or ints);
  - one value per example at most (the exported signatures take one per feature);
  - a binary task's label is 0/1, a numeric feature is not missing everywhere.
"""
from __future__ import annotations

import os
from typing import Dict, List

from tensorflow_data_validation.utils import stats_util
from tensorflow_metadata.proto.v0 import schema_pb2, statistics_pb2
from tfx.utils import io_utils

from mtrec.config import BINARY, PipelineConfig

_TYPE_NAMES = {schema_pb2.INT: "int", schema_pb2.FLOAT: "float", schema_pb2.BYTES: "string"}


def _common(feature: statistics_pb2.FeatureNameStatistics) -> statistics_pb2.CommonStatistics:
    which = feature.WhichOneof("stats")
    return getattr(feature, which).common_stats if which in ("num_stats", "string_stats") else \
        statistics_pb2.CommonStatistics()


def load_statistics(statistics_uri: str, split: str) -> statistics_pb2.DatasetFeatureStatisticsList:
    """One split of a StatisticsGen artifact."""
    return stats_util.load_stats_binary(os.path.join(statistics_uri, f"Split-{split}", "FeatureStats.pb"))


def load_schema(schema_uri: str) -> schema_pb2.Schema:
    """The schema of a Schema artifact (SchemaGen's or ImportSchemaGen's `schema.pbtxt`)."""
    return io_utils.parse_pbtxt_file(os.path.join(schema_uri, "schema.pbtxt"), schema_pb2.Schema())


def feature_stats(statistics: statistics_pb2.DatasetFeatureStatisticsList) -> Dict[str, statistics_pb2.FeatureNameStatistics]:
    return {".".join(f.path.step) or f.name: f for f in statistics.datasets[0].features}


def missing_counts(statistics: statistics_pb2.DatasetFeatureStatisticsList) -> Dict[str, int]:
    """{feature: examples without a value (absent, an empty list as CsvExampleGen writes an empty
    cell, or NaN)} in one split. Exact for features of at most one value per example (what the
    check below requires); for others, the examples that lack the feature."""
    examples = statistics.datasets[0].num_examples
    counts = {}
    for name, feature in feature_stats(statistics).items():
        common = _common(feature)
        with_value = common.tot_num_values if common.max_num_values <= 1 else common.num_non_missing
        nan = max((int(h.num_nan) for h in feature.num_stats.histograms), default=0)
        counts[name] = int(examples - with_value) + nan
    return counts


def problems(config: PipelineConfig, schema: schema_pb2.Schema, statistics: statistics_pb2.DatasetFeatureStatisticsList,
             source: str) -> List[str]:
    """Each problem as one sentence naming `source`, the column and what to do."""
    columns = {f.name: f for f in schema.feature}
    stats = feature_stats(statistics)
    found = []
    roles = ([(n, "features.ids") for n in config.features.ids]
             + [(n, "features.categorical") for n in config.features.categorical]
             + [(n, "features.hashed") for n in config.features.hashed]
             + [(n, "features.numeric") for n in config.features.numeric]
             + [(n, "a task label") for n in config.label_keys])
    known = ", ".join(sorted(columns))
    for name, role in roles:
        if name not in columns:
            found.append(f"{source}: column {name!r} ({role}) is not in the data; its columns are: {known}")
            continue
        kind = columns[name].type
        if role == "features.numeric" and kind == schema_pb2.BYTES:
            found.append(f"{source}: column {name!r} is configured numeric but holds strings; "
                         f"move it to features.categorical (or features.hashed), or fix the values")
        if role in ("features.ids", "features.categorical", "features.hashed") and kind == schema_pb2.FLOAT:
            found.append(f"{source}: column {name!r} ({role}) holds floats; a category needs strings or ints: "
                         f"move it to features.numeric")
        feature = stats.get(name)
        if feature is None:
            continue
        common = _common(feature)
        if common.max_num_values > 1:
            found.append(f"{source}: column {name!r} has up to {common.max_num_values} values in one example; "
                         f"mtrec takes one value per feature")
        if role == "features.numeric" and common.num_non_missing == 0:
            found.append(f"{source}: column {name!r} (features.numeric) is missing in every example of the train split")
    for task in config.evaluated_tasks:
        if task.type != BINARY or task.label not in columns or task.positive:
            continue
        if columns[task.label].type == schema_pb2.BYTES:
            found.append(f"{source}: label {task.label!r} of binary task {task.name!r} holds strings; it must be 0/1, "
                         f"or name the value that means 1 with `positive`")
            continue
        numbers = stats[task.label].num_stats if task.label in stats else None
        if numbers is not None and (numbers.min < 0 or numbers.max > 1):
            found.append(f"{source}: label {task.label!r} of binary task {task.name!r} ranges over "
                         f"[{numbers.min:g}, {numbers.max:g}]; it must be 0/1 (make it a regression task, "
                         f"or map it to 0/1)")
    return found
