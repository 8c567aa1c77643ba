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
import tensorflow_transform as tft
from google.protobuf import text_format
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tfx.types import artifact_utils

from mtrec.components import drift, spans
from mtrec.components.data_check import load_schema, load_statistics, missing_counts
from mtrec.components.text_embedder import META_FILE as TEXT_META
from mtrec.config import REGRESSION, RETRIEVAL, PipelineConfig
from mtrec.pipeline.evaluation import output_names
from mtrec.pipeline.pipeline import NO_TEXT_EVALUATOR, SINGLE_TASK_EVALUATOR, SINGLE_TASK_TRAINER, TEST_EVALUATOR
from mtrec.pipeline.training import RETRIEVAL_LOG, TRAINING_LOG
from mtrec.reporting.oracle import oracle_aucs
from mtrec.transformed import COLD_START

# Published results of the TFRS multitask tutorial (MovieLens 100K, random 80/20 split, seed 42):
# top-100 categorical accuracy and RMSE on the test split, per weighting of its two tasks.
TFRS_TUTORIAL = {"rating_only": {"top_100": 0.060, "rmse": 1.113},
                 "retrieval_only": {"top_100": 0.233, "rmse": 3.688},
                 "joint": {"top_100": 0.235, "rmse": 1.110}}



def _store(metadata_path: str) -> metadata_store.MetadataStore:
    connection = metadata_store_pb2.ConnectionConfig()
    connection.sqlite.filename_uri = metadata_path
    connection.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return metadata_store.MetadataStore(connection)


def latest_run_outputs(metadata_path: str) -> Dict[Tuple[str, str], metadata_store_pb2.Artifact]:
    """{(component id, output key): artifact} for the latest pipeline run in the MLMD store."""
    store = _store(metadata_path)
    runs = store.get_contexts_by_type("pipeline_run")
    if not runs:
        raise RuntimeError(f"no pipeline run recorded in {metadata_path}")
    run = max(runs, key=lambda c: (c.create_time_since_epoch, c.id))
    executions = {e.id: e for e in store.get_executions_by_context(run.id)}
    node_of = {}  # execution id -> component id, from TFX's `node` contexts named <pipeline>.<node id>
    for node in store.get_contexts_by_type("node"):
        for execution in store.get_executions_by_context(node.id):
            if execution.id in executions:
                node_of[execution.id] = node.name.split(".", 1)[-1]
    events = [e for e in store.get_events_by_execution_ids(list(executions))
              if e.type in (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)]
    artifacts = {a.id: a for a in store.get_artifacts_by_id([e.artifact_id for e in events])}
    outputs = {}
    for event in events:
        outputs[(node_of.get(event.execution_id), event.path.steps[0].key)] = artifacts[event.artifact_id]
    return outputs


def trainer_examples(outputs: Dict[Tuple[str, str], metadata_store_pb2.Artifact]) -> Tuple[str, bool]:
    """(examples URI, raw) of what a run's Trainer read, from `latest_run_outputs`: Transform's
    written examples, or where Transform only analysed (`training.transform_in_trainer`) the
    ingested ones, which go through Transform's graph (`datasets.dataset(raw=True)`)."""
    transformed = outputs.get(("Transform", "transformed_examples"))
    if transformed is not None:
        return transformed.uri, False
    return next(a.uri for (node, key), a in outputs.items() if key == "examples" and node.endswith("ExampleGen")), True


def _custom(artifact, name, default=None):
    if artifact is None or name not in artifact.custom_properties:
        return default
    value = artifact.custom_properties[name]
    return getattr(value, value.WhichOneof("value"))


def _slice_value(key) -> str:
    value = getattr(key, key.WhichOneof("kind"))
    return value.decode() if isinstance(value, bytes) else str(value)


COLD_SLICE = f"{COLD_START}=1"


def _metrics_by_slice(evaluation_uri: str, config: PipelineConfig, model: str) -> Dict[str, Dict[str, Dict]]:
    """{task: {slice ("overall", "device=mobile", ...): {metric: value}}} of `model`, in the task type's
    metric order whatever order TFMA wrote them in."""
    tasks = output_names(config)
    found = {t.name: {} for t in tasks.values()}
    for metrics_for_slice in tfma.load_metrics(evaluation_uri):
        slice_name = ";".join(f"{c.column}={_slice_value(c)}" for c in metrics_for_slice.slice_key.single_slice_keys)
        for item in metrics_for_slice.metric_keys_and_values:
            key = item.key
            if key.is_diff or key.model_name not in ("", model) or key.output_name not in tasks:
                continue
            task = tasks[key.output_name]
            if key.name in task.kind.metric_names and item.value.HasField("double_value"):
                found[task.name].setdefault(slice_name or "overall", {})[key.name] = item.value.double_value.value
    return {t.name: {slice_name: {m: metrics[m] for m in t.kind.metric_names if m in metrics}
                     for slice_name, metrics in found[t.name].items()} for t in tasks.values()}


def _overall(by_slice: Dict[str, Dict[str, Dict]], config: PipelineConfig) -> Dict[str, Dict]:
    """{task: {metric: value, "slices": {slice: gated metric}}} from `_metrics_by_slice`: the
    configured slices (the cold-start slice is `_cold_start`'s)."""
    gate = {t.name: t.gate_metric for t in output_names(config).values()}
    return {task: {**slices.get("overall", {}),
                   "slices": {name: m[gate[task]] for name, m in sorted(slices.items())
                              if name not in ("overall", COLD_SLICE) and gate[task] in m}}
            for task, slices in by_slice.items()}


def _overall_metrics(evaluation_uri: str, config: PipelineConfig, model: str = "candidate") -> Dict[str, Dict]:
    """`_overall` of `model` (candidate or baseline) in an evaluation."""
    return _overall(_metrics_by_slice(evaluation_uri, config, model), config)


def _cold_start(by_slice: Dict[str, Dict[str, Dict]], config: PipelineConfig) -> Dict[str, Dict]:
    """{task: {gated metric: value, "examples": weighted count}} on the impressions of items no
    training example had, from `_metrics_by_slice`."""
    gate = {t.name: t.gate_metric for t in output_names(config).values()}
    return {task: {gate[task]: slices[COLD_SLICE].get(gate[task]), "examples": slices[COLD_SLICE].get("example_count")}
            for task, slices in by_slice.items() if COLD_SLICE in slices}


def text_ablation(with_text: Dict[str, Dict[str, Dict]], without_text: Dict[str, Dict[str, Dict]],
                  config: PipelineConfig) -> Dict[str, Dict]:
    """{task: {metric, all: {with_text, without_text}, cold: {with_text, without_text}}}: the gated
    metric of the model and of its text ablation (each `_metrics_by_slice`), on all eval
    impressions and on the cold-start slice."""
    table = {}
    for task in output_names(config).values():
        metric = task.gate_metric
        table[task.name] = {"metric": metric, **{
            part: {"with_text": with_text[task.name].get(slice_name, {}).get(metric),
                   "without_text": without_text[task.name].get(slice_name, {}).get(metric)}
            for part, slice_name in (("all", "overall"), ("cold", COLD_SLICE))}}
    return table


def _failed_gates(evaluation_uri: str, config: PipelineConfig) -> list:
    tasks = output_names(config)
    result = tfma.load_validation_result(evaluation_uri)
    failures = [f"{field}: TFMA could not check every gate" for field in ("missing_thresholds", "missing_slices")
                if getattr(result, field)]
    for per_slice in result.metric_validations_per_slice:
        for failure in per_slice.failures:
            key, threshold = failure.metric_key, failure.metric_threshold
            bound = threshold.value_threshold if threshold.HasField("value_threshold") else threshold.change_threshold
            what = "change against the baseline" if key.is_diff else "value"
            task = tasks[key.output_name].name if key.output_name in tasks else key.output_name
            failures.append(f"{task}/{key.name}: {what} {failure.metric_value.double_value.value:.4f} "
                            f"outside {text_format.MessageToString(bound, as_one_line=True)}")
    return failures


def _split_statistics(statistics):
    for split in artifact_utils.decode_split_names(statistics.properties["split_names"].string_value):
        yield split, load_statistics(statistics.uri, split)


def _examples_per_split(statistics) -> Dict[str, int]:
    return {split: int(stats.datasets[0].num_examples) for split, stats in _split_statistics(statistics)}


def _missing_values(statistics, config: PipelineConfig) -> Dict[str, Dict[str, int]]:
    """{split: {configured feature or label: examples where it is missing}}."""
    names = config.raw_feature_names + config.label_keys
    out = {}
    for split, stats in _split_statistics(statistics):
        counts = missing_counts(stats)
        out[split] = {name: counts.get(name, 0) for name in names}
    return out


def split_protocol(config: PipelineConfig) -> Dict:
    """What was trained on, what chose the epoch, what gated the release and what is reported."""
    data = config.data
    if data.splits:
        how = {"by": "files", "patterns": dict(data.splits)}
    elif not config.split_by_time:
        how = {"by": "hash of the example id" if data.source != "examples" else "hash of the example",
               "eval_percent": data.eval_percent, "test_percent": data.test_percent, "seed": data.split_seed}
    else:
        how = {"by": "time", "eval_days": data.eval_days, "test_days": data.test_days}
    return {**how, "trained_on": "train", "early_stopping_on": "eval", "gated_on": "eval",
            "reported": ["eval", "test"] if config.has_test_split else ["eval"]}


def _read_json(artifact, name: str) -> Optional[dict]:
    path = os.path.join(artifact.uri, name) if artifact is not None else None
    if path is None or not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


def single_task_table(tasks: Dict[str, Dict], baselines: Dict[str, Dict], config: PipelineConfig) -> Dict[str, Dict]:
    """Per task: the gated metric of the multi-task and single-task models, `delta` (positive when
    multi-task learning helped) and `negative_transfer` (it hurt)."""
    table = {}
    for task in config.tasks:
        metric = task.gate_metric
        mtl, stl = tasks.get(task.name, {}).get(metric), baselines.get(task.name, {}).get(metric)
        if mtl is None or stl is None:
            continue
        delta = task.kind.improvement(mtl, stl)
        table[task.name] = {"metric": metric, "mtl": mtl, "stl": stl, "delta": delta, "negative_transfer": delta < 0}
    return table


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
        summary["missing_values"] = _missing_values(statistics, config)
    summary["split_protocol"] = split_protocol(config)

    evaluation = get("Evaluator", "evaluation")
    candidate = _metrics_by_slice(evaluation.uri, config, "candidate") if evaluation is not None else {}
    summary["tasks"] = _overall(candidate, config)
    cold_key = config.features.cold_start_key
    if evaluation is not None and cold_key:
        summary["cold_start"] = _cold_start(candidate, config)
    oracle_path = os.path.join(data_dir, "oracle.csv") if data_dir else None
    if examples is not None and oracle_path and os.path.exists(oracle_path):
        transform = get("Transform", "transform_graph")
        trained = ({i.decode() for i in tft.TFTransformOutput(transform.uri).vocabulary_by_name(cold_key)}
                   if summary.get("cold_start") and transform is not None else None)
        oracle = oracle_aucs(examples.uri, oracle_path, config, trained)
        for task, auc in oracle["overall"].items():
            summary["tasks"][task]["oracle_auc"] = auc
            if "auc" in summary["tasks"][task]:
                summary["tasks"][task]["gap_to_oracle"] = auc - summary["tasks"][task]["auc"]
        for task, auc in oracle["cold_start"].items():
            if task in summary["cold_start"]:
                summary["cold_start"][task]["oracle_auc"] = auc
    no_text = get(NO_TEXT_EVALUATOR, "evaluation")
    if no_text is not None and evaluation is not None:
        summary["text_ablation"] = text_ablation(candidate, _metrics_by_slice(no_text.uri, config, "candidate"), config)
    test = get(TEST_EVALUATOR, "evaluation")
    if test is not None:
        summary["test"] = _overall_metrics(test.uri, config)
    blessing = get("Evaluator", "blessing")
    summary["blessed"] = bool(_custom(blessing, "blessed", 0))
    summary["failed_gates"] = _failed_gates(evaluation.uri, config) if evaluation is not None else []
    warmup = get("ServingWarmup", "blessing")
    if warmup is not None:
        summary["serving_check"] = {"passed": bool(_custom(warmup, "blessed", 0)),
                                    "warmup_requests": _custom(warmup, "warmup_requests", 0),
                                    "problem": _custom(warmup, "problem", "")}
    pushed = get("Pusher", "pushed_model")
    summary["pushed_model"] = _custom(pushed, "pushed_destination") if _custom(pushed, "pushed", 0) else None
    summary["model_uri"] = get("Trainer", "model").uri if get("Trainer", "model") is not None else None

    text = _read_json(get("TextEmbedder", "embeddings"), TEXT_META)
    if text is not None:
        summary["text"] = {**text, "uri": get("TextEmbedder", "embeddings").uri}
    training = _read_json(get("Trainer", "model_run"), TRAINING_LOG)
    if training is not None:
        summary["training"] = {k: training.get(k)
                               for k in ("architecture", "weighting", "epochs", "patience", "fit_seconds")}
        summary["training"]["warm_start"] = training.get("warm_start", {"warm_start": False})
        summary["task_weights"] = training["task_weights"]
    if config.data.span and statistics is not None:
        summary.update(span_report(metadata_path, config, statistics, get("ImportSchemaGen", "schema")
                                   or get("SchemaGen", "schema")))
    for task, metrics in (_read_json(get("Trainer", "model_run"), RETRIEVAL_LOG) or {}).items():
        summary["tasks"][task] = metrics
    if config.baselines:
        # Measured alone by the single_task_evaluator, or as the release Evaluator's baseline.
        alone = get(SINGLE_TASK_EVALUATOR, "evaluation")
        compared, model = (alone, "candidate") if alone is not None else (evaluation, "baseline")
        baselines = _overall_metrics(compared.uri, config, model=model) if compared is not None else {}
        baselines.update(_read_json(get(SINGLE_TASK_TRAINER, "model_run"), RETRIEVAL_LOG) or {})
        summary["stl"] = single_task_table(summary["tasks"], baselines, config)
    retrieval = next((t.name for t in config.tasks if t.type == RETRIEVAL), None)
    regression = next((t.name for t in config.tasks if t.type == REGRESSION), None)
    if retrieval and "top_100" in summary["tasks"].get(retrieval, {}):
        summary["retrieval_top100"] = summary["tasks"][retrieval]["top_100"]
    if regression and "root_mean_squared_error" in summary["tasks"].get(regression, {}):
        summary["rmse"] = summary["tasks"][regression]["root_mean_squared_error"]
    if config.protocol == "tfrs":
        summary["tfrs_tutorial"] = TFRS_TUTORIAL
        baseline_logs = _read_json(get(SINGLE_TASK_TRAINER, "model_run"), TRAINING_LOG)
        if baseline_logs and retrieval and regression:
            summary["tfrs_comparison"] = tfrs_comparison(summary, baseline_logs, retrieval, regression)
    return summary


def span_report(metadata_path: str, config: PipelineConfig, statistics, schema) -> Dict:
    """A daily log's run: its span, the spans its window holds, and its drift from the previous
    span (every compared feature's distance; `drifted`, those over their threshold) and label rates."""
    span = spans.span_number(config.data.span)
    store = _store(metadata_path)
    ingested = sorted({a.properties["span"].int_value for a in store.get_artifacts_by_type("Examples")
                       if "span" in a.properties and span - config.data.window_days < a.properties["span"].int_value <= span})
    train = load_statistics(statistics.uri, "train")
    report = {"span": config.data.span, "window": [spans.span_date(s) for s in ingested],
              "label_rates": drift.label_rates(train, config)}
    earlier = [a for a in store.get_artifacts_by_type("ExampleStatistics")
               if a.properties["span"].int_value < span and a.state == metadata_store_pb2.Artifact.LIVE]
    if earlier and schema is not None:
        previous = max(earlier, key=lambda a: (a.properties["span"].int_value, a.id))
        before = load_statistics(previous.uri, "train")
        rows = drift.measure(train, before, load_schema(schema.uri), config)
        report["drift"] = {"since": spans.span_date(previous.properties["span"].int_value), "measurements": rows,
                           "drifted": [r["feature"] for r in rows if r["drifted"]],
                           "previous_label_rates": drift.label_rates(before, config)}
    return report


def tfrs_comparison(summary: Dict, baselines: Dict, retrieval: str, regression: str) -> Dict[str, Dict]:
    """Our rows of the TFRS tutorial's table: each single-task two-tower baseline measured on both
    tasks (the other head untrained, as in the tutorial), and the joint model."""
    row = lambda log: {"top_100": log.get("retrieval", {}).get(retrieval, {}).get("top_100"),  # noqa: E731
                       "rmse": log.get("eval", {}).get(f"{regression}_rmse")}
    return {"rating_only": row(baselines.get(regression, {})), "retrieval_only": row(baselines.get(retrieval, {})),
            "joint": {"top_100": summary.get("retrieval_top100"), "rmse": summary.get("rmse")}}
