"""The TFX pipeline, assembled from small builders: ingest, validate, transform, train, evaluate, push.

    ingest -> StatisticsGen -> (Import)SchemaGen -> ExampleValidator -> AnomalyGate (schema and config)
           -> Transform -> Trainer -> Evaluator (vs latest blessed model)
    [TextEmbedder (side-table text, ingest's reviews -> vectors by id) -> Trainer]
                                   [-> test_evaluator (the test split, report only)]
                                   -> ServingWarmup (loads as TF Serving would, writes warm-up records)
           -> Pusher (the warmed model, if both bless it)

With `text.ablation`, a `no_text_trainer` fits the same model without text features on the same
splits, and a report-only `no_text_evaluator` measures it overall and on the cold-start slice.

With `baselines`, a second Trainer (`single_task_trainer`) fits one model per task on the same
transformed splits. With `gate_against: single_task` the release Evaluator compares the multi-task
model with them task by task; else a report-only `single_task_evaluator` measures them alone (the
same metrics, overall, so the summary compares them with the release Evaluator's candidate,
without TFMA running the multi-task model a second time).

A daily log (`data.span`): ingest reads one day folder (a TFX span); `span_window` resolves the
last `data.window_days` spans' Examples from MLMD for Transform and Trainer, `previous_span_statistics`
the previous span's statistics for AnomalyGate's drift check, and the latest model blessed on an
earlier day is the Trainer's `base_model` (warm start) and the Evaluator's baseline.

The same components feed LocalDagRunner here and KubeflowV2DagRunner (`mtrec.kubeflow.pipelines`).
"""
from __future__ import annotations

import dataclasses
import glob
import hashlib
import importlib.util
import json
import os
from typing import List, Optional

# TFX's classes from their modules: `tfx.v1` imports Vertex AI's SDK, 4.4 s of every process (test_cli)
from tfx.components import (Evaluator, ExampleValidator, FileBasedExampleGen, ImportExampleGen, Pusher, SchemaGen,
                            StatisticsGen)
from tfx.components.example_gen.custom_executors import parquet_executor
from tfx.components.schema_gen.import_schema_gen.component import ImportSchemaGen
from tfx.dsl.components.base import executor_spec
from tfx.dsl.components.common.resolver import Resolver
from tfx.dsl.input_resolution.strategies.latest_blessed_model_strategy import LatestBlessedModelStrategy
from tfx.orchestration.metadata import sqlite_metadata_connection_config
from tfx.orchestration.pipeline import Pipeline
from tfx.proto import example_gen_pb2, pusher_pb2, trainer_pb2, transform_pb2
from tfx.types.channel import Channel
from tfx.types.standard_artifacts import ExampleStatistics, Examples, Model, ModelBlessing

from mtrec import schemas
from mtrec.components.anomaly_gate import AnomalyGate
from mtrec.components.csv_example_gen import CsvExampleGen
from mtrec.components.log_example_gen import LogExampleGen
from mtrec.components import spans
from mtrec.components.serving_warmup import ServingWarmup
from mtrec.components.text_embedder import TextEmbedder
from mtrec.components.trainer import RAW_EXAMPLES, SPAN, Trainer
from mtrec.components.transform import Transform
from mtrec.config import REVIEWS, PipelineConfig
from mtrec.pipeline.evaluation import eval_config

PREPROCESSING_FN = "mtrec.pipeline.preprocessing.preprocessing_fn"
RUN_FN = "mtrec.pipeline.training.run_fn"
# The code each runs, by module: what their cache keys hash (packages hash every file under them).
TRANSFORM_CODE = ("mtrec.pipeline.preprocessing", "mtrec.config", "mtrec.task_types", "mtrec.transformed",
                  "mtrec.components.transform")
TRAINER_CODE = TRANSFORM_CODE + ("mtrec.models", "mtrec.pipeline.training", "mtrec.pipeline.datasets",
                                 "mtrec.components.trainer", "mtrec.components.text_embedder",
                                 "mtrec.pipeline.export", "mtrec.pipeline.retrieval", "mtrec.pipeline.distribution",
                                 "mtrec.serving.signatures")
SINGLE_TASK_TRAINER = "single_task_trainer"
SINGLE_TASK_EVALUATOR = "single_task_evaluator"
TEST_EVALUATOR = "test_evaluator"
NO_TEXT_TRAINER = "no_text_trainer"  # the text ablation: the same model without text features
NO_TEXT_EVALUATOR = "no_text_evaluator"
SPAN_WINDOW = "span_window"  # daily logs: the Examples of the last data.window_days spans
PREVIOUS_STATISTICS = "previous_span_statistics"
DEFAULT_SCHEMA = os.path.join(os.path.dirname(schemas.__file__), "schema.pbtxt")


@dataclasses.dataclass
class PipelinePaths:
    """Where a run reads and writes. `metadata` is the MLMD SQLite file (None on Kubeflow)."""

    root: str
    data: str
    serving: str
    metadata: Optional[str] = None


def _hash_split(eval_percent: int, test_percent: int = 0) -> example_gen_pb2.Output:
    buckets = {"train": 100 - eval_percent - test_percent, "eval": eval_percent, "test": test_percent}
    return example_gen_pb2.Output(split_config=example_gen_pb2.SplitConfig(splits=[
        example_gen_pb2.SplitConfig.Split(name=name, hash_buckets=n) for name, n in buckets.items() if n]))


def example_gen(config: PipelineConfig, data_dir: str, fingerprint=None, span_date=None):
    """Raw event logs go through LogExampleGen (a daily log's span: `data.span`); ready example
    tables through TFX's own ExampleGens, split by hash or by the user's own files (`data.splits`,
    TFX's input config)."""
    data = config.data
    if data.source in ("synthetic", "events", "movielens-100k"):
        return LogExampleGen(input_base=data_dir, input_format=data.format, split=data.split,
                             eval_days=data.eval_days, eval_percent=data.eval_percent, split_seed=data.split_seed,
                             test_days=data.test_days, test_percent=data.test_percent, fingerprint=fingerprint,
                             span_pattern=spans.DATE_PATTERN if data.span else "", span=_span(config),
                             span_date=span_date)
    if data.splits:
        splits = {"input_config": example_gen_pb2.Input(splits=[
            example_gen_pb2.Input.Split(name=name, pattern=pattern) for name, pattern in data.splits.items()])}
    else:
        single = example_gen_pb2.Input.Split(name="single_split", pattern=data.pattern)
        splits = {"input_config": example_gen_pb2.Input(splits=[single]),
                  "output_config": _hash_split(data.eval_percent, data.test_percent)}
    if data.format == "csv":
        return CsvExampleGen(input_base=data_dir, **splits)
    if data.format == "tfrecord":
        return ImportExampleGen(input_base=data_dir, **splits)
    return FileBasedExampleGen(
        input_base=data_dir, custom_executor_spec=executor_spec.BeamExecutorSpec(parquet_executor.Executor), **splits)


def _span(config: PipelineConfig) -> Optional[int]:
    """The span number of `data.span` when it names a day (`latest` is resolved where it runs)."""
    return spans.span_number(config.data.span) if config.data.span not in ("", spans.LATEST) else None


def span_resolver(name: str, channel, first: int, last: int, count: int) -> Resolver:
    """The newest `channel` artifact of each of the last `count` spans in [first, last], from MLMD."""
    return Resolver(strategy_class=spans.SpanWindowStrategy,
                    config={"first_span": first, "last_span": last, "num_spans": count},
                    **{name: channel})


def schema_gen(config: PipelineConfig, statistics, default_schema: str = DEFAULT_SCHEMA):
    if config.data.schema == "infer":
        return SchemaGen(statistics=statistics, infer_feature_shape=True)
    path = default_schema if config.data.schema == "default" else config.data.schema
    path = path if "://" in path else os.path.abspath(path)
    return ImportSchemaGen(schema_file=path)


def code_fingerprint(modules) -> str:
    """Hash of the Python sources of `modules` (dotted names of packages or modules), found by
    path without importing them. Transform and Trainer get their code by import path, which TFX's
    cache does not see: this puts the code in the cache key, as TFX does for a module_file."""
    digest = hashlib.sha256()
    for module in modules:
        origin = importlib.util.find_spec(module).origin
        root = os.path.dirname(origin) if origin.endswith("__init__.py") else origin
        files = sorted(glob.glob(os.path.join(root, "**", "*.py"), recursive=True)) if os.path.isdir(root) else [root]
        for path in files:
            with open(path, "rb") as f:
                digest.update(f.read())
    return digest.hexdigest()[:16]


def transform_component(config: PipelineConfig, examples, schema):
    """Analyses the train split; writes the transformed train and eval splits only for a Trainer
    that streams them (`TrainingConfig.transform_in_trainer`)."""
    materialize = not config.training.transform_in_trainer
    return Transform(examples=examples, schema=schema, preprocessing_fn=PREPROCESSING_FN, materialize=materialize,
                     # the test split is for the test Evaluator, which reads raw examples
                     splits_config=transform_pb2.SplitsConfig(analyze=["train"],
                                                           transform=["train", "eval"] if materialize else []),
                     # StatisticsGen has the raw data's statistics; TFDV again on the raw
                     # and transformed data would cost more than Transform itself
                     disable_statistics=True,
                     # the analyzer cache pays only when a later run feeds it back (per-span
                     # analysis of a rolling window); unread, its writes cost a quarter of Transform
                     disable_analyzer_cache=True,
                     # our preprocessing_fn is plain TensorFlow ops: traced as a TF1 graph once, not as
                     # TF2 functions many times over (20.5 -> 12.6 s on 2,000 impressions, the same values)
                     force_tf_compat_v1=True,
                     custom_config={"config": config.transform_json(),
                                    "code": code_fingerprint(TRANSFORM_CODE)})


def _source(config: PipelineConfig, paths: PipelinePaths) -> str:
    """How error messages name the input: the table's files, or the joined logs."""
    data = config.data
    if data.source == "examples":
        return f"{data.format} table {paths.data}"
    return f"examples joined from {paths.data}"


def create_components(config: PipelineConfig, paths: PipelinePaths, schema_file: str = DEFAULT_SCHEMA,
                      data_fingerprint=None, span_date=None) -> List:
    """The pipeline's components; `schema_file` is the default schema's path where they run and
    `data_fingerprint` what tells TFX's cache that the logs changed (default: their files now);
    `span_date` which day of a daily log to ingest where no driver resolves it (Kubeflow)."""
    custom_config = {"config": config.training_json(), "code": code_fingerprint(TRAINER_CODE)}
    if config.training.transform_in_trainer:  # the Trainer reads raw examples (transform_component)
        custom_config[RAW_EXAMPLES] = True
    ingest = example_gen(config, paths.data, data_fingerprint, span_date)
    examples = ingest.outputs["examples"]  # this run's (span's): what the release is measured on
    statistics = StatisticsGen(examples=examples)
    schema = schema_gen(config, statistics.outputs["statistics"], schema_file)
    validator = ExampleValidator(statistics=statistics.outputs["statistics"], schema=schema.outputs["schema"])
    extra, previous, training_examples, span = [], None, examples, _span(config)
    if span is not None:  # a day of a daily log: the window's spans from MLMD, the previous span's statistics
        window = span_resolver("examples", Channel(type=Examples, producer_component_id=ingest.id,
                                                   output_key="examples"),
                               span - config.data.window_days + 1, span, config.data.window_days).with_id(SPAN_WINDOW)
        window.add_upstream_node(ingest)
        before = span_resolver("statistics", Channel(type=ExampleStatistics, producer_component_id=statistics.id,
                                                 output_key="statistics"),
                               0, span - 1, 1).with_id(PREVIOUS_STATISTICS)
        extra += [window, before]
        training_examples, previous = window.outputs["examples"], before.outputs["statistics"]
    gate = AnomalyGate(anomalies=validator.outputs["anomalies"], statistics=statistics.outputs["statistics"],
                       schema=schema.outputs["schema"], config=config.transform_json(), source=_source(config, paths),
                       drift=json.dumps(dataclasses.asdict(config.drift), sort_keys=True),
                       previous_statistics=previous)
    transform = transform_component(config, training_examples, schema.outputs["schema"])
    transform.add_upstream_node(gate)
    text = None
    if config.text.fields:
        text_base = os.path.join(paths.data, config.data.span) if span is not None else paths.data
        text = TextEmbedder(input_base=text_base, fields=config.text.fields, input_format=config.data.format,
                            encoder_path=config.text.encoder_path, max_length=config.text.max_length,
                            batch_size=config.text.batch_size, cache_dir=os.path.join(paths.root, "text_cache"),
                            fingerprint=data_fingerprint,
                            reviews=ingest.outputs["reviews"] if REVIEWS in config.text.fields else None)
        extra.append(text)
    # A day's baseline (and warm start) is the latest model blessed on an earlier day's data.
    latest_blessed = Resolver(
        **({"strategy_class": spans.BlessedBeforeSpanStrategy, "config": {"span": span}} if span is not None
           else {"strategy_class": LatestBlessedModelStrategy}),
        model=Channel(type=Model), model_blessing=Channel(type=ModelBlessing)).with_id("latest_blessed_model")
    if span is not None:
        custom_config[SPAN] = span

    def trainer_on(custom, with_text=True, base_model=None):
        return Trainer(
            run_fn=RUN_FN, examples=training_examples if custom.get(RAW_EXAMPLES)
            else transform.outputs["transformed_examples"],
            transform_graph=transform.outputs["transform_graph"], schema=schema.outputs["schema"],
            train_args=trainer_pb2.TrainArgs(splits=["train"]), eval_args=trainer_pb2.EvalArgs(splits=["eval"]),
            custom_config=custom, text_embeddings=text.outputs["embeddings"] if text and with_text else None,
            base_model=base_model)

    warm_start = config.training.warm_start and bool(config.data.span)
    trainer = trainer_on(custom_config, base_model=latest_blessed.outputs["model"] if warm_start else None)
    if config.text.ablation:  # overall and on the cold-start slice, what the summary compares
        without = config.without_text()
        no_text = trainer_on({**custom_config, "config": without.training_json()}, with_text=False)
        extra += [no_text.with_id(NO_TEXT_TRAINER),
                  Evaluator(examples=examples, model=no_text.outputs["model"],
                            eval_config=eval_config(dataclasses.replace(without, slices=[]), gated=False))
                  .with_id(NO_TEXT_EVALUATOR)]
    if config.baselines:
        single_task = trainer_on({**custom_config, "single_task": True}).with_id(SINGLE_TASK_TRAINER)
        extra.append(single_task)
    if config.gate_against != "single_task" or warm_start:
        extra.append(latest_blessed)
    if config.gate_against == "single_task":
        baseline_model = single_task.outputs["model"]
    else:
        baseline_model = latest_blessed.outputs["model"]
        if config.baselines:  # overall, what the summary compares the multi-task model with
            extra.append(Evaluator(examples=examples, model=single_task.outputs["model"],
                                   eval_config=eval_config(config, gated=False, sliced=False))
                         .with_id(SINGLE_TASK_EVALUATOR))
    evaluator = Evaluator(examples=examples, model=trainer.outputs["model"],
                          baseline_model=baseline_model, eval_config=eval_config(config))
    if config.has_test_split:  # reported, never gated: the release gate stays on eval
        extra.append(Evaluator(examples=examples, model=trainer.outputs["model"],
                               eval_config=eval_config(config, gated=False), example_splits=["test"])
                     .with_id(TEST_EVALUATOR))
    warmup = ServingWarmup(model=trainer.outputs["model"], examples=examples, model_name=config.model_name)
    pusher = Pusher(  # pushes the warmed copy of the Trainer's model
        model_blessing=evaluator.outputs["blessing"], infra_blessing=warmup.outputs["blessing"],
        push_destination=pusher_pb2.PushDestination(filesystem=pusher_pb2.PushDestination.Filesystem(
            base_directory=os.path.join(paths.serving, config.model_name))))
    return [ingest, statistics, schema, validator, gate, transform, trainer, *extra, evaluator, warmup, pusher]


def create_pipeline(config: PipelineConfig, paths: PipelinePaths, enable_cache: bool = True) -> Pipeline:
    metadata = sqlite_metadata_connection_config(paths.metadata) if paths.metadata else None
    return Pipeline(pipeline_name=config.name, pipeline_root=paths.root,
                    components=create_components(config, paths), enable_cache=enable_cache,
                    metadata_connection_config=metadata, beam_pipeline_args=config.beam_args)
