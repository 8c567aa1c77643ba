"""The TFX pipeline, assembled from small builders: ingest, validate, transform, train, evaluate, push.

    ingest -> StatisticsGen -> (Import)SchemaGen -> ExampleValidator -> AnomalyGate
           -> Transform -> Trainer -> Evaluator (vs latest blessed model) -> Pusher

The same `create_pipeline` feeds LocalDagRunner here and KubeflowV2DagRunner for Kubeflow.
"""
from __future__ import annotations

import dataclasses
import os
from typing import List, Optional

from tfx import v1 as tfx
from tfx.components.example_gen.custom_executors import parquet_executor
from tfx.dsl.components.base import executor_spec

from mtrec import schemas
from mtrec.components.anomaly_gate import AnomalyGate
from mtrec.components.log_example_gen import LogExampleGen
from mtrec.config import PipelineConfig
from mtrec.pipeline.evaluation import eval_config

PREPROCESSING_FN = "mtrec.pipeline.preprocessing.preprocessing_fn"
RUN_FN = "mtrec.pipeline.training.run_fn"
DEFAULT_SCHEMA = os.path.join(os.path.dirname(schemas.__file__), "schema.pbtxt")


@dataclasses.dataclass
class PipelinePaths:
    """Where a run reads and writes. `metadata` is the MLMD SQLite file (None on Kubeflow)."""

    root: str
    data: str
    serving: str
    metadata: Optional[str] = None


def _hash_split(eval_percent: int) -> tfx.proto.Output:
    return tfx.proto.Output(split_config=tfx.proto.SplitConfig(splits=[
        tfx.proto.SplitConfig.Split(name="train", hash_buckets=100 - eval_percent),
        tfx.proto.SplitConfig.Split(name="eval", hash_buckets=eval_percent)]))


def example_gen(config: PipelineConfig, data_dir: str):
    """Raw event logs go through LogExampleGen; ready example tables through TFX's own ExampleGens."""
    data = config.data
    if data.source in ("synthetic", "events"):
        return LogExampleGen(input_base=data_dir, input_format=data.format, split=data.split,
                             eval_days=data.eval_days, eval_percent=data.eval_percent)
    output = _hash_split(data.eval_percent)
    if data.format == "csv":
        return tfx.components.CsvExampleGen(input_base=data_dir, output_config=output)
    if data.format == "tfrecord":
        return tfx.components.ImportExampleGen(input_base=data_dir, output_config=output)
    return tfx.components.FileBasedExampleGen(
        input_base=data_dir, output_config=output,
        custom_executor_spec=executor_spec.BeamExecutorSpec(parquet_executor.Executor))


def schema_gen(config: PipelineConfig, statistics):
    if config.data.schema == "infer":
        return tfx.components.SchemaGen(statistics=statistics, infer_feature_shape=True)
    path = DEFAULT_SCHEMA if config.data.schema == "default" else os.path.abspath(config.data.schema)
    return tfx.components.ImportSchemaGen(schema_file=path)


def create_components(config: PipelineConfig, paths: PipelinePaths) -> List:
    custom_config = {"config": config.training_json()}
    ingest = example_gen(config, paths.data)
    examples = ingest.outputs["examples"]
    statistics = tfx.components.StatisticsGen(examples=examples)
    schema = schema_gen(config, statistics.outputs["statistics"])
    validator = tfx.components.ExampleValidator(statistics=statistics.outputs["statistics"],
                                                schema=schema.outputs["schema"])
    gate = AnomalyGate(anomalies=validator.outputs["anomalies"])
    transform = tfx.components.Transform(examples=examples, schema=schema.outputs["schema"],
                                         preprocessing_fn=PREPROCESSING_FN,
                                         custom_config={"config": config.transform_json()})
    transform.add_upstream_node(gate)
    trainer = tfx.components.Trainer(
        run_fn=RUN_FN, examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"], schema=schema.outputs["schema"],
        train_args=tfx.proto.TrainArgs(splits=["train"]), eval_args=tfx.proto.EvalArgs(splits=["eval"]),
        custom_config=custom_config)
    baseline = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing)).with_id("latest_blessed_model")
    evaluator = tfx.components.Evaluator(examples=examples, model=trainer.outputs["model"],
                                         baseline_model=baseline.outputs["model"], eval_config=eval_config(config))
    pusher = tfx.components.Pusher(
        model=trainer.outputs["model"], model_blessing=evaluator.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(filesystem=tfx.proto.PushDestination.Filesystem(
            base_directory=os.path.join(paths.serving, config.model_name))))
    return [ingest, statistics, schema, validator, gate, transform, trainer, baseline, evaluator, pusher]


def create_pipeline(config: PipelineConfig, paths: PipelinePaths, enable_cache: bool = True) -> tfx.dsl.Pipeline:
    metadata = (tfx.orchestration.metadata.sqlite_metadata_connection_config(paths.metadata)
                if paths.metadata else None)
    return tfx.dsl.Pipeline(pipeline_name=config.name, pipeline_root=paths.root,
                            components=create_components(config, paths), enable_cache=enable_cache,
                            metadata_connection_config=metadata, beam_pipeline_args=config.beam_args)
