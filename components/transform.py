"""TFX's Transform, whose transformed examples keep the span of the examples each came from.

Transform writes one transformed Examples artifact per input artifact, in input order, but leaves
their `span` unset: over a rolling window of days, the Trainer could not tell the newest day's
examples from the others' (a warm-started day trains on the newest, `training.warm_start_spans`).
"""
from __future__ import annotations

from tfx.components.transform import component, executor
from tfx.dsl.components.base import executor_spec
from tfx.types import standard_component_specs

from mtrec.components.spans import artifact_span


class Executor(executor.Executor):
    def Do(self, input_dict, output_dict, exec_properties):
        super().Do(input_dict, output_dict, exec_properties)  # fills output_dict: one output per input
        for source, transformed in zip(input_dict[standard_component_specs.EXAMPLES_KEY],
                                       output_dict.get(standard_component_specs.TRANSFORMED_EXAMPLES_KEY) or []):
            transformed.span = artifact_span(source)


class Transform(component.Transform):
    """`tfx.components.Transform`, the same arguments; its transformed examples carry `span`."""

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)
