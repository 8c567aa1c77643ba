"""The TFMA EvalConfig, generated from the task list: per-task metrics, slices and release gates.

Binary tasks report AUC, PR-AUC, log loss and calibration and are gated on AUC; regression tasks
report RMSE and MAE and are gated on RMSE. Each gate has an absolute bound and a change threshold
against the baseline model (the latest blessed one, or the single-task models with
`gate_against: single_task`), so no task may fall behind it beyond its tolerance. Conditional tasks
are weighted by their `given` label, so like-given-click is measured on clicked impressions only.
"""
from __future__ import annotations

import sys

import tensorflow_model_analysis as tfma

from mtrec.config import BINARY, PipelineConfig, TaskConfig

BINARY_METRICS = ("AUCPrecisionRecall", "BinaryCrossentropy", "Calibration", "MeanLabel", "MeanPrediction")
REGRESSION_METRICS = ("MeanAbsoluteError", "MeanLabel", "MeanPrediction")


def _gate(task: TaskConfig, gated: bool = True) -> tfma.MetricThreshold:
    higher_is_better = task.type == BINARY
    bound = task.gate.bound if gated else None
    if bound is None:  # always a value threshold: with change thresholds alone TFMA blesses no first model
        bound = 0.0 if higher_is_better else sys.float_info.max
    value = tfma.GenericValueThreshold(**{"lower_bound" if higher_is_better else "upper_bound": {"value": bound}})
    tolerance = task.gate.tolerance if gated else sys.float_info.max
    return tfma.MetricThreshold(
        value_threshold=value,
        change_threshold=tfma.GenericChangeThreshold(
            direction=tfma.MetricDirection.HIGHER_IS_BETTER if higher_is_better else tfma.MetricDirection.LOWER_IS_BETTER,
            absolute={"value": -tolerance if higher_is_better else tolerance}))


def _metrics(task: TaskConfig, gated: bool) -> tfma.MetricsSpec:
    gated = "AUC" if task.type == BINARY else "RootMeanSquaredError"
    others = BINARY_METRICS if task.type == BINARY else REGRESSION_METRICS
    overall_only = tfma.PerSliceMetricThreshold(slicing_specs=[tfma.SlicingSpec()], threshold=_gate(task, gated))
    metrics = [tfma.MetricConfig(class_name=gated, per_slice_thresholds=[overall_only])]
    metrics += [tfma.MetricConfig(class_name=name) for name in others]
    metrics.append(tfma.MetricConfig(class_name="ExampleCount"))
    return tfma.MetricsSpec(output_names=[task.name], metrics=metrics)


def eval_config(config: PipelineConfig, signature_name: str = "serving_default", gated: bool = True
                ) -> tfma.EvalConfig:
    """The EvalConfig of every task TFMA can measure per example (all but retrieval).

    With `gated=False` the thresholds cannot fail: for the Evaluator that only measures the
    multi-task model against the single-task baselines, beside the one that gates the release.
    """
    tasks = config.evaluated_tasks
    model_spec = tfma.ModelSpec(
        signature_name=signature_name,
        label_keys={t.name: t.label for t in tasks},
        example_weight_keys={t.name: t.given for t in tasks if t.given})
    options = tfma.Options()
    options.include_default_metrics.value = False  # the compiled Keras metrics ignore task weights
    return tfma.EvalConfig(
        model_specs=[model_spec], options=options,
        metrics_specs=[_metrics(t, gated) for t in tasks],
        slicing_specs=[tfma.SlicingSpec()] + [tfma.SlicingSpec(feature_keys=[name]) for name in config.slices])
