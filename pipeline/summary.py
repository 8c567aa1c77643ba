"""What one pipeline run produced, read back from MLMD: counts, per-task metrics, blessing, push.

Reads the outputs of the latest `pipeline_run` context (cached executions included), so a rerun
that TFX served from its cache reports the same numbers as the run that computed them.
"""
from __future__ import annotations

import json
import os
from typing import Dict, Optional, Tuple

import tensorflow as tf
import tensorflow_model_analysis as tfma
from google.protobuf import text_format
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tensorflow_data_validation.utils import stats_util
from tfx.types import artifact_utils

from mtrec.config import BINARY, PipelineConfig
from mtrec.pipeline.oracle import oracle_auc

# TFMA metric names by task type; the first is the gated one.
METRIC_NAMES = {
    BINARY: ("auc", "auc_precision_recall", "binary_crossentropy", "calibration", "mean_label", "mean_prediction",
             "example_count"),
    "regression": ("root_mean_squared_error", "mean_absolute_error", "mean_label", "mean_prediction", "example_count"),
}


def latest_run_outputs(metadata_path: str) -> Dict[Tuple[str, str], metadata_store_pb2.Artifact]:
    """{(component type, output key): artifact} for the latest pipeline run in the MLMD store."""
    connection = metadata_store_pb2.ConnectionConfig()
    connection.sqlite.filename_uri = metadata_path
    connection.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    store = metadata_store.MetadataStore(connection)
    runs = store.get_contexts_by_type("pipeline_run")
    if not runs:
        raise RuntimeError(f"no pipeline run recorded in {metadata_path}")
    run = max(runs, key=lambda c: (c.create_time_since_epoch, c.id))
    executions = {e.id: e for e in store.get_executions_by_context(run.id)}
    types = {t.id: t.name.rsplit(".", 1)[-1] for t in store.get_execution_types()}
    events = [e for e in store.get_events_by_execution_ids(list(executions))
              if e.type in (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)]
    artifacts = {a.id: a for a in store.get_artifacts_by_id([e.artifact_id for e in events])}
    outputs = {}
    for event in events:
        component = types[executions[event.execution_id].type_id]
        outputs[(component, event.path.steps[0].key)] = artifacts[event.artifact_id]
    return outputs


def _custom(artifact, name, default=None):
    if artifact is None or name not in artifact.custom_properties:
        return default
    value = artifact.custom_properties[name]
    return getattr(value, value.WhichOneof("value"))


def _slice_value(key) -> str:
    value = getattr(key, key.WhichOneof("kind"))
    return value.decode() if isinstance(value, bytes) else str(value)


def _overall_metrics(evaluation_uri: str, config: PipelineConfig) -> Dict[str, Dict]:
    """{task: {metric: value}} for the overall slice, plus {task: {slice: gated metric}}."""
    tasks = {t.name: t for t in config.tasks}
    overall = {name: {} for name in tasks}
    slices = {name: {} for name in tasks}
    for metrics_for_slice in tfma.load_metrics(evaluation_uri):
        slice_name = ";".join(f"{c.column}={_slice_value(c)}" for c in metrics_for_slice.slice_key.single_slice_keys)
        slice_name = slice_name or "overall"
        for item in metrics_for_slice.metric_keys_and_values:
            key = item.key
            if key.is_diff or key.model_name not in ("", "candidate") or key.output_name not in tasks:
                continue
            task = tasks[key.output_name]
            if key.name not in METRIC_NAMES[task.type] or not item.value.HasField("double_value"):
                continue
            value = item.value.double_value.value
            if slice_name == "overall":
                overall[task.name][key.name] = value
            elif key.name == METRIC_NAMES[task.type][0]:
                slices[task.name][slice_name] = value
    return {name: {**overall[name], "slices": dict(sorted(slices[name].items()))} for name in tasks}


def _failed_gates(evaluation_uri: str) -> list:
    result = tfma.load_validation_result(evaluation_uri)
    failures = [f"{field}: TFMA could not check every gate" for field in ("missing_thresholds", "missing_slices")
                if getattr(result, field)]
    for per_slice in result.metric_validations_per_slice:
        for failure in per_slice.failures:
            key, threshold = failure.metric_key, failure.metric_threshold
            bound = threshold.value_threshold if threshold.HasField("value_threshold") else threshold.change_threshold
            what = "change against the blessed baseline" if key.is_diff else "value"
            failures.append(f"{key.output_name}/{key.name}: {what} {failure.metric_value.double_value.value:.4f} "
                            f"outside {text_format.MessageToString(bound, as_one_line=True)}")
    return failures


def _examples_per_split(statistics) -> Dict[str, int]:
    counts = {}
    for split in artifact_utils.decode_split_names(statistics.properties["split_names"].string_value):
        stats = stats_util.load_stats_binary(os.path.join(statistics.uri, f"Split-{split}", "FeatureStats.pb"))
        counts[split] = int(stats.datasets[0].num_examples)
    return counts


def summarize(metadata_path: str, config: PipelineConfig, data_dir: Optional[str]) -> Dict:
    """The run summary written to `run_summary.json`."""
    outputs = latest_run_outputs(metadata_path)
    get = lambda component, key: outputs.get((component, key))  # noqa: E731
    examples = next((a for (c, k), a in outputs.items() if k == "examples" and "ExampleGen" in c), None)
    summary = {"pipeline": config.name, "input_lines": None, "examples": {}, "dead_letter": None}
    dead_letter = get("LogExampleGen", "dead_letter")
    if dead_letter is not None:
        with tf.io.gfile.GFile(os.path.join(dead_letter.uri, "counts.json")) as f:
            counts = json.load(f)
        summary.update(input_lines=counts["input_lines"], input_lines_by_source=counts["input_lines_by_source"],
                       accepted_lines=counts["accepted_lines"], dead_letter=dict(counts["dead_letter"], uri=dead_letter.uri))
    statistics = get("StatisticsGen", "statistics")
    if statistics is not None:
        summary["examples"] = _examples_per_split(statistics)

    evaluation = get("Evaluator", "evaluation")
    summary["tasks"] = _overall_metrics(evaluation.uri, config) if evaluation is not None else {}
    oracle_path = os.path.join(data_dir, "oracle.csv") if data_dir else None
    if examples is not None and oracle_path and os.path.exists(oracle_path):
        for task, auc in oracle_auc(examples.uri, oracle_path, config).items():
            summary["tasks"][task]["oracle_auc"] = auc
            if "auc" in summary["tasks"][task]:
                summary["tasks"][task]["gap_to_oracle"] = auc - summary["tasks"][task]["auc"]
    blessing = get("Evaluator", "blessing")
    summary["blessed"] = bool(_custom(blessing, "blessed", 0))
    summary["failed_gates"] = _failed_gates(evaluation.uri) if evaluation is not None else []
    pushed = get("Pusher", "pushed_model")
    summary["pushed_model"] = _custom(pushed, "pushed_destination") if _custom(pushed, "pushed", 0) else None
    summary["model_uri"] = get("Trainer", "model").uri if get("Trainer", "model") is not None else None
    return summary
