"""TFMA metrics that TFMA has no native class for, and summaries that cost no pass of their own.

TFMA computes a Keras metric (e.g. `tf_keras.metrics.RootMeanSquaredError`) through a wrapper
that AutoGraph-converts its update function in every Evaluator and feeds it per example; a native
metric is a plain Beam combiner. Every combiner is one more Python call per example and slice, and
that is what an Evaluator spends its time on: TFMA's MeanLabel, MeanPrediction, Calibration and
ExampleCount would be two combiners per task beside the calibration histogram AUC already fills,
and its MAE and MSE two more. So a binary task's summary is read off AUC's histogram, a
regression task's errors and means come from one combiner of weighted sums, and log loss reads a
task's scalar label, prediction and weight straight off the example instead of through TFMA's
general unpacking: the same values (checked against TFMA's own classes in
tests/pipeline/test_tfma_metrics.py).

Named in the EvalConfig by class and this module's path, so any Evaluator that can import mtrec
(the local runner, the Kubeflow image) finds them.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Iterable, Mapping

import apache_beam as beam
import numpy as np
import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.metrics import calibration_histogram, cross_entropy_metrics, metric_types, metric_util

ROOT_MEAN_SQUARED_ERROR = "root_mean_squared_error"
MEAN_ABSOLUTE_ERROR = "mean_absolute_error"
MEAN_LABEL = "mean_label"
MEAN_PREDICTION = "mean_prediction"
CALIBRATION = "calibration"
EXAMPLE_COUNT = "example_count"  # weighted, as TFMA's ExampleCount is when the spec has example weights
BINARY_CROSSENTROPY = "binary_crossentropy"  # TFMA's BinaryCrossEntropy's name, so results read the same


def _ratio(numerator: float, denominator: float) -> float:
    """TFMA's convention: NaN where the denominator is (close to) zero."""
    return float("nan") if np.isclose(denominator, 0.0) else numerator / denominator


def _keys(names, model_name, output_name, sub_key, example_weighted) -> Dict[str, metric_types.MetricKey]:
    return {name: metric_types.MetricKey(name=name, model_name=model_name, output_name=output_name,
                                         sub_key=sub_key, example_weighted=example_weighted) for name in names}


class CalibrationSummary(tfma.metrics.Metric):
    """A binary task's mean label, mean prediction, calibration and example count, from AUC's histogram.

    TFMA keeps one calibration histogram per output (its buckets hold weighted labels, predictions
    and examples) and shares it among every metric that asks for it by the same key, so these four
    cost no pass over the examples beyond the one AUC and PR-AUC make.
    """

    def __init__(self):
        super().__init__(metric_util.merge_per_key_computations(_calibration_summary), name="calibration_summary")


def _calibration_summary(name: str, eval_config=None, model_name: str = "",
                         output_name: str = "", sub_key=None, aggregation_type=None, class_weights=None,
                         example_weighted: bool = False) -> metric_types.MetricComputations:
    computations = calibration_histogram.calibration_histogram(  # the arguments AUC's confusion matrices pass
        eval_config=eval_config, model_name=model_name, output_name=output_name, sub_key=sub_key,
        aggregation_type=aggregation_type, class_weights=class_weights, example_weighted=example_weighted)
    histogram = computations[-1].keys[-1]
    keys = _keys((MEAN_LABEL, MEAN_PREDICTION, CALIBRATION, EXAMPLE_COUNT), model_name, output_name, sub_key,
                 example_weighted)

    def result(metrics):
        buckets = metrics[histogram]
        labels = sum(b.weighted_labels for b in buckets)
        predictions = sum(b.weighted_predictions for b in buckets)
        examples = sum(b.weighted_examples for b in buckets)
        return {keys[MEAN_LABEL]: _ratio(labels, examples), keys[MEAN_PREDICTION]: _ratio(predictions, examples),
                keys[CALIBRATION]: _ratio(predictions, labels), keys[EXAMPLE_COUNT]: examples}

    return [*computations, metric_types.DerivedMetricComputation(keys=list(keys.values()), result=result)]


def _log(x: float) -> float:
    """numpy's log of one value: -inf at 0, NaN below (math.log raises)."""
    return math.log(x) if x > 0 else (-math.inf if x == 0 else math.nan)


def _pick(value: Any, names: Iterable[str]) -> Any:
    """`value[model][output]` where those keys are there, as TFMA's `StandardExtracts.get_by_key`."""
    for name in names:
        if isinstance(value, Mapping) and name in value:
            value = value[name]
    return value


class _LogLossCombiner(cross_entropy_metrics._BinaryCrossEntropyCombiner):
    """TFMA's binary cross entropy combiner, reading a task's label, probability and weight
    straight off the example where each is one value.

    TFMA's `add_input` unpacks every example through `to_label_prediction_example_weight`
    (prediction keys, vocabularies, class ids): a quarter of the release Evaluator's time,
    measured. Anything but one value each (a sub key, class weights, logits, label smoothing, a
    prediction that is a dict) takes TFMA's own `add_input`.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        key = self._metric_key
        self._names = (key.model_name, key.output_name)
        self._direct = (key.sub_key is None and self._aggregation_type is None and not self._class_weights
                        and not self._from_logits and not self._label_smoothing)

    def _direct_values(self, element: metric_types.StandardMetricInputs):
        """(label, prediction, weight) as floats where each is one value, else None."""
        values = [_pick(element.get(key), self._names) for key in (tfma.constants.LABELS_KEY,
                                                                   tfma.constants.PREDICTIONS_KEY)]
        values.append(_pick(element.get(tfma.constants.EXAMPLE_WEIGHTS_KEY), self._names)
                      if self._example_weighted else 1.0)
        if all(isinstance(v, float) or (isinstance(v, np.ndarray) and v.size == 1) for v in values):
            return [float(v) if isinstance(v, float) else v.item() for v in values]
        return None

    def add_input(self, accumulator, element: metric_types.StandardMetricInputs):
        values = self._direct_values(element) if self._direct else None
        if values is None:
            return super().add_input(accumulator, element)
        label, prediction, weight = values
        accumulator.total_cross_entropy += (-label * _log(prediction) - (1 - label) * _log(1 - prediction)) * weight
        accumulator.total_example_weights += weight
        return accumulator

    def merge_accumulators(self, accumulators: Iterable):
        # TFMA's merges its first accumulator into itself when Beam passes a list, not an iterator
        merged = self.create_accumulator()
        for accumulator in accumulators:
            merged.merge(accumulator)
        return merged


class BinaryLogLoss(tfma.metrics.Metric):
    """TFMA's BinaryCrossEntropy (probabilities in, no label smoothing), named the same."""

    def __init__(self):
        super().__init__(metric_util.merge_per_key_computations(_binary_log_loss), name=BINARY_CROSSENTROPY)


def _binary_log_loss(name: str, eval_config=None, model_name: str = "", output_name: str = "", sub_key=None,
                     aggregation_type=None, class_weights=None, example_weighted: bool = False):
    key = metric_types.MetricKey(name=name, model_name=model_name, output_name=output_name, sub_key=sub_key,
                                 example_weighted=example_weighted)
    combiner = _LogLossCombiner(eval_config=eval_config, model_name=model_name, output_name=output_name, metric_key=key,
                                aggregation_type=aggregation_type, class_weights=class_weights,
                                example_weighted=example_weighted)
    return [metric_types.MetricComputation(keys=[key], preprocessors=None, combiner=combiner)]


class _RegressionSumsCombiner(beam.CombineFn):
    """Per output: sums of w, w*label, w*prediction, w*|error| and w*error^2 in one pass."""

    def __init__(self, key: metric_types.MetricKey, eval_config, aggregation_type, class_weights,
                 example_weighted: bool):
        self._key, self._eval_config = key, eval_config
        self._aggregation_type, self._class_weights = aggregation_type, class_weights
        self._example_weighted = example_weighted

    def create_accumulator(self) -> np.ndarray:
        return np.zeros(5)

    def add_input(self, accumulator: np.ndarray, element: metric_types.StandardMetricInputs) -> np.ndarray:
        for label, prediction, weight in metric_util.to_label_prediction_example_weight(
                element, eval_config=self._eval_config, model_name=self._key.model_name,
                output_name=self._key.output_name, sub_key=self._key.sub_key,
                aggregation_type=self._aggregation_type, class_weights=self._class_weights,
                example_weighted=self._example_weighted):
            label, prediction = metric_util.safe_to_scalar(label), metric_util.safe_to_scalar(prediction)
            weight = metric_util.safe_to_scalar(weight)
            error = label - prediction
            if not math.isnan(error):  # as TFMA's mean errors skip them
                accumulator += (weight, weight * label, weight * prediction, weight * abs(error),
                                weight * error * error)
        return accumulator

    def merge_accumulators(self, accumulators: Iterable[np.ndarray]) -> np.ndarray:
        return np.sum(list(accumulators), axis=0)

    def extract_output(self, accumulator: np.ndarray) -> metric_types.MetricsDict:
        return {self._key: accumulator}


def _regression_metrics(names, eval_config, model_name, output_name, sub_key, aggregation_type, class_weights,
                        example_weighted) -> metric_types.MetricComputations:
    key = metric_types.MetricKey(name="_regression_sums", model_name=model_name, output_name=output_name,
                                 sub_key=sub_key, example_weighted=example_weighted)
    combiner = _RegressionSumsCombiner(key, eval_config, aggregation_type, class_weights, example_weighted)
    # one private key for RMSE and the summary: TFMA runs a computation it is asked for twice once
    sums = metric_types.MetricComputation(keys=[key], preprocessors=None, combiner=combiner)
    keys = _keys(names, model_name, output_name, sub_key, example_weighted)

    def result(metrics):
        weight, labels, predictions, absolute, squared = metrics[key]
        values = {ROOT_MEAN_SQUARED_ERROR: math.sqrt(_ratio(squared, weight)),
                  MEAN_ABSOLUTE_ERROR: _ratio(absolute, weight), MEAN_LABEL: _ratio(labels, weight),
                  MEAN_PREDICTION: _ratio(predictions, weight), EXAMPLE_COUNT: float(weight)}
        return {keys[name]: values[name] for name in names}

    return [sums, metric_types.DerivedMetricComputation(keys=list(keys.values()), result=result)]


class RootMeanSquaredError(tfma.metrics.Metric):
    """sqrt of the (example-weighted) mean squared error: Keras's RootMeanSquaredError, natively."""

    def __init__(self):
        super().__init__(metric_util.merge_per_key_computations(_root_mean_squared_error),
                         name=ROOT_MEAN_SQUARED_ERROR)


def _root_mean_squared_error(name: str, eval_config=None, model_name: str = "", output_name: str = "", sub_key=None,
                             aggregation_type=None, class_weights=None, example_weighted: bool = False):
    return _regression_metrics((ROOT_MEAN_SQUARED_ERROR,), eval_config, model_name, output_name, sub_key,
                               aggregation_type, class_weights, example_weighted)


class RegressionSummary(tfma.metrics.Metric):
    """A regression task's mean absolute error, mean label, mean prediction and example count,
    from the same pass as its RMSE."""

    def __init__(self):
        super().__init__(metric_util.merge_per_key_computations(_regression_summary), name="regression_summary")


def _regression_summary(name: str, eval_config=None, model_name: str = "", output_name: str = "", sub_key=None,
                        aggregation_type=None, class_weights=None, example_weighted: bool = False):
    return _regression_metrics((MEAN_ABSOLUTE_ERROR, MEAN_LABEL, MEAN_PREDICTION, EXAMPLE_COUNT), eval_config,
                               model_name, output_name, sub_key, aggregation_type, class_weights, example_weighted)


for _metric in (CalibrationSummary, BinaryLogLoss, RootMeanSquaredError, RegressionSummary):
    metric_types.register_metric(_metric)
