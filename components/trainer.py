"""TFX's Trainer with one more optional input: the TextEmbedder's vectors (and its `base_model`).

The same spec, GenericExecutor and `run_fn` contract as `tfx.components.Trainer`; the executor
hands the `text_embeddings` artifact's URI to `run_fn` as `fn_args.custom_config["text_embeddings"]`,
so the model can carry the catalogue's vectors (looked up by id inside the served graph). On a
daily log it also hands over each span's train files (`train_files_by_span`), from the spans our
Transform keeps on its outputs, so a warm-started day can train on the newest spans only.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

from tfx import types
from tfx.components.trainer import executor as trainer_executor
from tfx.dsl.components.base import base_component, executor_spec
from tfx.proto import trainer_pb2
from tfx.types import artifact_utils, standard_artifacts, standard_component_specs
from tfx.types.component_spec import ChannelParameter
from tfx.utils import io_utils, json_utils

from mtrec.components.spans import artifact_span
from mtrec.components.text_embedder import TextEmbeddings

TEXT_EMBEDDINGS = "text_embeddings"
SPAN = "span"  # custom_config key and Model property: the newest span a daily run trained on
TRAIN_FILES_BY_SPAN = "train_files_by_span"  # custom_config key: {span: train file patterns}
RAW_EXAMPLES = "raw_examples"  # custom_config key: the examples are raw, run_fn applies Transform's graph


class TrainerSpec(standard_component_specs.TrainerSpec):
    INPUTS = {**standard_component_specs.TrainerSpec.INPUTS,
              TEXT_EMBEDDINGS: ChannelParameter(type=TextEmbeddings, optional=True)}


class Executor(trainer_executor.GenericExecutor):
    def _GetFnArgs(self, input_dict, output_dict, exec_properties):
        fn_args = super()._GetFnArgs(input_dict, output_dict, exec_properties)
        custom = dict(fn_args.custom_config or {})
        if input_dict.get(TEXT_EMBEDDINGS):
            custom[TEXT_EMBEDDINGS] = artifact_utils.get_single_uri(input_dict[TEXT_EMBEDDINGS])
        if SPAN in custom:
            by_span = {}
            for examples in input_dict[standard_component_specs.EXAMPLES_KEY]:
                by_span.setdefault(str(artifact_span(examples)), []).extend(
                    io_utils.all_files_pattern(uri) for uri in artifact_utils.get_split_uris([examples], "train"))
            custom[TRAIN_FILES_BY_SPAN] = by_span
        fn_args.custom_config = custom
        return fn_args

    def Do(self, input_dict, output_dict, exec_properties):
        super().Do(input_dict, output_dict, exec_properties)
        span = json_utils.loads(exec_properties.get("custom_config") or "{}").get(SPAN)
        if span is not None:  # what the next day's warm start and gate look for (spans.BlessedBeforeSpanStrategy)
            artifact_utils.get_single_instance(output_dict["model"]).set_int_custom_property(SPAN, span)


class Trainer(base_component.BaseComponent):
    """`tfx.components.Trainer(run_fn=...)` plus `text_embeddings`."""

    SPEC_CLASS = TrainerSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, run_fn: str, examples: types.BaseChannel, transform_graph: types.BaseChannel,
                 schema: types.BaseChannel, train_args: trainer_pb2.TrainArgs, eval_args: trainer_pb2.EvalArgs,
                 custom_config: Dict[str, Any], text_embeddings: Optional[types.BaseChannel] = None,
                 base_model: Optional[types.BaseChannel] = None):
        """`base_model`: the model to warm-start from (`fn_args.base_model`), e.g. the latest blessed one."""
        super().__init__(spec=TrainerSpec(
            run_fn=run_fn, examples=examples, transform_graph=transform_graph, schema=schema, base_model=base_model,
            train_args=train_args, eval_args=eval_args, custom_config=json_utils.dumps(custom_config),
            text_embeddings=text_embeddings,
            model=types.Channel(type=standard_artifacts.Model),
            model_run=types.Channel(type=standard_artifacts.ModelRun)))
