"""TFMA metrics that cost fewer Python calls per example than TFMA's own, with TFMA's values.

An Evaluator spends its time calling a combiner per example, slice and metric, and each call
unpacks the example through TFMA's general `to_label_prediction_example_weight`. So:
- a binary task's mean label, mean prediction, calibration and example count are read off the
  calibration histogram its AUC fills (TFMA's MeanLabel, MeanPrediction, Calibration and
  ExampleCount would be combiners of their own), and a regression task's RMSE, MAE, means and
  count come from one combiner of weighted sums;
- AUC, PR-AUC, log loss and those sums read a task's scalar label, prediction and weight straight
  off the example (`_DirectRoad`), and fall back to TFMA's unpacking for anything else.
The values are TFMA's own classes' (checked in tests/pipeline/test_tfma_metrics.py).

Named in the EvalConfig by class and this module's path, so any Evaluator that can import mtrec
(the local runner, the Kubeflow image) finds them.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Iterable

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


def _log(x: float) -> float:
    """numpy's log of one value: -inf at 0, NaN below (math.log raises)."""
    return math.log(x) if x > 0 else (-math.inf if x == 0 else math.nan)


def _pick(value: Any, names: Iterable[str]) -> Any:
    """`value[model][output]` where those keys are there, as TFMA's `StandardExtracts.get_by_key`.

    Extracts are dicts: a check against `Mapping` took 8% of an Evaluator's time, measured
    (another mapping stays unpicked, which sends the example down TFMA's road)."""
    for name in names:
        if isinstance(value, dict) and name in value:
            value = value[name]
    return value


class _DirectRoad:
    """Reads a task's label, prediction and weight straight off the example where each is one value.

    TFMA's combiners unpack every example through `to_label_prediction_example_weight` (prediction
    keys, vocabularies, class ids, flattening): 78 us a call, measured, against 12-14 us here, and an
    Evaluator makes that call per example, slice and combiner. Anything but one value each (a sub
    key, class weights, a prediction that is a dict) takes TFMA's own road.
    """

    def _init_direct_road(self, key, also: bool = True):
        """After the combiner's own `_aggregation_type`, `_class_weights` and `_example_weighted` are
        set: the road is direct for `key`'s output unless TFMA's unpacking has something to do."""
        self._names = (key.model_name, key.output_name)
        self._direct = also and key.sub_key is None and self._aggregation_type is None and not self._class_weights

    def _direct_values(self, element: metric_types.StandardMetricInputs):
        """[label, prediction, weight] as floats where each is one value, else None."""
        if not self._direct:
            return None
        values = [_pick(element.get(key), self._names) for key in (tfma.constants.LABELS_KEY,
                                                                   tfma.constants.PREDICTIONS_KEY)]
        values.append(_pick(element.get(tfma.constants.EXAMPLE_WEIGHTS_KEY), self._names)
                      if self._example_weighted else 1.0)
        if all(isinstance(v, float) or (isinstance(v, np.ndarray) and v.size == 1) for v in values):
            return [float(v) if isinstance(v, float) else float(v.item()) for v in values]  # an int label too
        return None


class _LogLossCombiner(_DirectRoad, cross_entropy_metrics._BinaryCrossEntropyCombiner):
    """TFMA's binary cross entropy combiner on the direct road (no logits or label smoothing)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._init_direct_road(self._metric_key, also=not self._from_logits and not self._label_smoothing)

    def add_input(self, accumulator, element: metric_types.StandardMetricInputs):
        values = self._direct_values(element)
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


class _HistogramCombiner(_DirectRoad, calibration_histogram._CalibrationHistogramCombiner):
    """TFMA's calibration histogram combiner (AUC's, PR-AUC's and the calibration summary's) on the
    direct road: the same buckets, fractional labels split as TFMA splits them."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._init_direct_road(self._key)

    @classmethod
    def replacing(cls, combiner: calibration_histogram._CalibrationHistogramCombiner) -> "_HistogramCombiner":
        """The same histogram as TFMA's `combiner` (built deep inside TFMA's confusion matrices)."""
        return cls(key=combiner._key, eval_config=combiner._eval_config, aggregation_type=combiner._aggregation_type,
                   class_weights=combiner._class_weights, example_weighted=combiner._example_weighted,
                   num_buckets=combiner._num_buckets, left=combiner._left, right=combiner._left + combiner._range,
                   prediction_based_bucketing=combiner._prediction_based_bucketing,
                   fractional_labels=combiner._fractional_labels)

    def add_input(self, accumulator, element: metric_types.StandardMetricInputs):
        values = self._direct_values(element)
        if values is None or (self._fractional_labels and not 0.0 <= values[0] <= 1.0):  # TFMA's error then
            return super().add_input(accumulator, element)
        label, prediction, weight = values
        parts = ((0.0, weight * (1.0 - label)), (1.0, weight * label)) if self._fractional_labels else ((label, weight),)
        for label, weight in parts:
            if self._fractional_labels and weight == 0.0:  # as TFMA, which yields no zero-weight part
                continue
            index = self._bucket_index(prediction if self._prediction_based_bucketing else label)
            bucket = accumulator.get(index)
            if bucket is None:
                accumulator[index] = calibration_histogram.Bucket(index, label * weight, prediction * weight, weight)
            else:
                bucket.weighted_labels += label * weight
                bucket.weighted_predictions += prediction * weight
                bucket.weighted_examples += weight
        return accumulator


def _direct_histograms(computations: metric_types.MetricComputations) -> metric_types.MetricComputations:
    """TFMA's computations with each calibration histogram on the direct road, under the same key.

    Every metric asking for a histogram must do this: TFMA computes a key once only where the
    combiners' class names agree too."""
    return [metric_types.MetricComputation(keys=c.keys, preprocessors=c.preprocessors,
                                           combiner=_HistogramCombiner.replacing(c.combiner))
            if type(c) is metric_types.MetricComputation
            and type(c.combiner) is calibration_histogram._CalibrationHistogramCombiner else c
            for c in computations]


class _DirectHistograms:
    """A TFMA metric whose calibration histograms take the direct road."""

    def computations(self, *args, **kwargs) -> metric_types.MetricComputations:
        return _direct_histograms(super().computations(*args, **kwargs))


class DirectAUC(_DirectHistograms, tfma.metrics.AUC):
    """TFMA's AUC (ROC, 10,000 thresholds), named `auc`, its histogram on the direct road."""


class DirectAUCPrecisionRecall(_DirectHistograms, tfma.metrics.AUCPrecisionRecall):
    """TFMA's PR-AUC, named `auc_precision_recall`, on DirectAUC's histogram."""


class CalibrationSummary(_DirectHistograms, tfma.metrics.Metric):
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


class _RegressionSumsCombiner(_DirectRoad, beam.CombineFn):
    """Per output: sums of w, w*label, w*prediction, w*|error| and w*error^2 in one pass."""

    def __init__(self, key: metric_types.MetricKey, eval_config, aggregation_type, class_weights,
                 example_weighted: bool):
        self._key, self._eval_config = key, eval_config
        self._aggregation_type, self._class_weights = aggregation_type, class_weights
        self._example_weighted = example_weighted
        self._init_direct_road(key)

    def create_accumulator(self) -> np.ndarray:
        return np.zeros(5)

    def _values(self, element: metric_types.StandardMetricInputs) -> Iterable:
        direct = self._direct_values(element)
        if direct is not None:
            return (direct,)
        return ((metric_util.safe_to_scalar(label), metric_util.safe_to_scalar(prediction),
                 metric_util.safe_to_scalar(weight))
                for label, prediction, weight in metric_util.to_label_prediction_example_weight(
                    element, eval_config=self._eval_config, model_name=self._key.model_name,
                    output_name=self._key.output_name, sub_key=self._key.sub_key,
                    aggregation_type=self._aggregation_type, class_weights=self._class_weights,
                    example_weighted=self._example_weighted))

    def add_input(self, accumulator: np.ndarray, element: metric_types.StandardMetricInputs) -> np.ndarray:
        for label, prediction, weight in self._values(element):
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


for _metric in (DirectAUC, DirectAUCPrecisionRecall, CalibrationSummary, BinaryLogLoss, RootMeanSquaredError,
                RegressionSummary):
    metric_types.register_metric(_metric)
