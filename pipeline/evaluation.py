"""The TFMA EvalConfig, generated from the task list: per-task metrics, slices and release gates.

What each task type reports and is gated on comes from `mtrec.task_types` (binary: AUC, PR-AUC,
log loss, calibration, means and example count, gated on AUC; regression: RMSE, MAE, means and
example count, gated on RMSE), each a TFMA metric: mtrec's own classes
(`mtrec.pipeline.tfma_metrics`) give TFMA's values at fewer Python calls per example. Each gate has
an absolute bound and a change threshold against the baseline model (the latest blessed one, or the
single-task models with `gate_against: single_task`), so no task may fall behind it beyond its
tolerance.

Labels and example weights come from the model's `transform_features` signature (TFMA's
preprocessing function): each task's label as trained on and `<task>__weight`, which is 0 where
the label is missing and, for a conditional task, its `given` label, so like-given-click is
measured on clicked impressions only and a row without a like label counts for no like metric.

TFMA calls the model's `evaluate` signature, which returns exactly the evaluated tasks, so the
candidate and any baseline (multi-task, or single-task models side by side) give TFMA the same
outputs. TFMA unwraps a lone output, so with a single evaluated task the config names no output.
"""
from __future__ import annotations

import sys

import tensorflow_model_analysis as tfma

from mtrec.config import PipelineConfig, TaskConfig
from mtrec.pipeline import tfma_metrics
from mtrec.serving.signatures import EVALUATE, TRANSFORM_FEATURES
from mtrec.transformed import COLD_START, weight_name


# The TFMA metric classes mtrec defines (`mtrec.pipeline.tfma_metrics`): {class name: module}.
OWN_METRICS = {name: tfma_metrics.__name__
               for name in ("DirectAUC", "DirectAUCPrecisionRecall", "CalibrationSummary", "BinaryLogLoss",
                            "RootMeanSquaredError", "RegressionSummary")}


def _metric(class_name: str, **kwargs) -> tfma.MetricConfig:
    return tfma.MetricConfig(class_name=class_name, module=OWN_METRICS.get(class_name, ""), **kwargs)


def _gate(task: TaskConfig, gated: bool = True) -> tfma.MetricThreshold:
    """The task's release gate; with `gated=False`, thresholds no value can fail (report only)."""
    higher_is_better = task.kind.higher_is_better
    bound = task.gate.bound if gated else None
    if bound is None:  # always a value threshold: with change thresholds alone TFMA blesses no first model
        bound = -sys.float_info.max if higher_is_better else sys.float_info.max
    value = tfma.GenericValueThreshold(**{"lower_bound" if higher_is_better else "upper_bound": {"value": bound}})
    tolerance = task.gate.tolerance if gated else sys.float_info.max
    return tfma.MetricThreshold(
        value_threshold=value,
        change_threshold=tfma.GenericChangeThreshold(
            direction=tfma.MetricDirection.HIGHER_IS_BETTER if higher_is_better else tfma.MetricDirection.LOWER_IS_BETTER,
            absolute={"value": -tolerance if higher_is_better else tolerance}))


def output_names(config: PipelineConfig) -> dict:
    """{TFMA output name: task}: the task names, or "" for a lone evaluated task."""
    tasks = config.evaluated_tasks
    return {"": tasks[0]} if len(tasks) == 1 else {t.name: t for t in tasks}


def _metrics(task: TaskConfig, output_name: str, gated: bool) -> tfma.MetricsSpec:
    kind = task.kind
    overall_only = tfma.PerSliceMetricThreshold(slicing_specs=[tfma.SlicingSpec()], threshold=_gate(task, gated))
    metrics = [_metric(kind.gate_class, per_slice_thresholds=[overall_only])]
    metrics += [_metric(name) for name in kind.report_classes]
    return tfma.MetricsSpec(output_names=[output_name] if output_name else [], metrics=metrics)


def eval_config(config: PipelineConfig, signature_name: str = EVALUATE, gated: bool = True,
                sliced: bool = True) -> tfma.EvalConfig:
    """The EvalConfig of every task TFMA can measure per example (all but retrieval).

    With `gated=False` the thresholds cannot fail: for Evaluators that only report (the
    single-task baselines, the test split) beside the one that gates the release. Sliced: by each
    of `config.slices` and, where items have ids, the cold-start slice (impressions of items no
    training example had; `cold_start` from the `transform_features` signature). With
    `sliced=False`, overall only: each slice feature is one more pass of TFMA's per-example metrics.
    """
    outputs = output_names(config)
    # A SavedModel called through its signatures: named, TFMA need not load it as Keras to guess.
    common = {"signature_name": signature_name, "preprocessing_function_names": [TRANSFORM_FEATURES],
              "model_type": tfma.constants.TF_GENERIC}
    if "" in outputs:
        task = outputs[""]
        model_spec = tfma.ModelSpec(label_key=task.label, example_weight_key=weight_name(task.name), **common)
    else:
        model_spec = tfma.ModelSpec(
            **common,
            label_keys={name: t.label for name, t in outputs.items()},
            example_weight_keys={name: weight_name(t.name) for name, t in outputs.items()})
    options = tfma.Options()
    options.include_default_metrics.value = False  # the compiled Keras metrics ignore task weights
    slicing_specs = [tfma.SlicingSpec()]
    if sliced:
        slicing_specs += [tfma.SlicingSpec(feature_keys=[name]) for name in config.slices]
        if config.features.cold_start_key:  # the cold items alone: the rest would be a pass more
            slicing_specs.append(tfma.SlicingSpec(feature_values={COLD_START: "1"}))
    return tfma.EvalConfig(
        model_specs=[model_spec], options=options,
        metrics_specs=[_metrics(t, name, gated) for name, t in outputs.items()], slicing_specs=slicing_specs)
