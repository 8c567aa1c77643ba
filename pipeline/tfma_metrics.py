"""TFMA metrics that TFMA has no native class for.

TFMA computes a Keras metric (e.g. `tf_keras.metrics.RootMeanSquaredError`) through a wrapper
that AutoGraph-converts its update function in every Evaluator and feeds it per example; a native
metric is a plain Beam combiner. Named in the EvalConfig by class and this module's path, so any
Evaluator that can import mtrec (the local runner, the Kubeflow image) finds them.
"""
from __future__ import annotations

import math

import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.metrics import metric_types, metric_util

ROOT_MEAN_SQUARED_ERROR = "root_mean_squared_error"


class RootMeanSquaredError(tfma.metrics.Metric):
    """sqrt of TFMA's (example-weighted) MeanSquaredError: Keras's RootMeanSquaredError, natively."""

    def __init__(self, name: str = ROOT_MEAN_SQUARED_ERROR):
        super().__init__(metric_util.merge_per_key_computations(_root_mean_squared_error), name=name)


def _root_mean_squared_error(name: str = ROOT_MEAN_SQUARED_ERROR, eval_config=None, model_name: str = "",
                             output_name: str = "", sub_key=None, aggregation_type=None, class_weights=None,
                             example_weighted: bool = False) -> metric_types.MetricComputations:
    key = metric_types.MetricKey(name=name, model_name=model_name, output_name=output_name, sub_key=sub_key,
                                 example_weighted=example_weighted)
    computations = tfma.metrics.MeanSquaredError().computations(
        eval_config=eval_config, model_names=[model_name], output_names=[output_name], sub_keys=[sub_key],
        aggregation_type=aggregation_type, class_weights=class_weights, example_weighted=example_weighted)
    squared = computations[-1].keys[-1]

    def result(metrics):
        return {key: math.sqrt(metrics[squared])}

    return [*computations, metric_types.DerivedMetricComputation(keys=[key], result=result)]


metric_types.register_metric(RootMeanSquaredError)
