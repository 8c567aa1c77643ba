"""mtrec's TFMA metrics give TFMA's own values, from fewer passes over the examples."""
import numpy as np
import pandas as pd
import pytest
import tensorflow_model_analysis as tfma

from mtrec.pipeline.evaluation import OWN_METRICS


def _metrics(frame: pd.DataFrame, class_names) -> dict:
    """{(slice, metric name): value} of TFMA over a frame of label, prediction, weight and a slice column."""
    config = tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(label_key="label", prediction_key="prediction", example_weight_key="weight")],
        metrics_specs=[tfma.MetricsSpec(metrics=[tfma.MetricConfig(class_name=name, module=OWN_METRICS.get(name, ""))
                                                 for name in class_names])],
        slicing_specs=[tfma.SlicingSpec(), tfma.SlicingSpec(feature_keys=["device"])])
    result = tfma.analyze_raw_data(frame, config)
    return {(slice_key, name): value["doubleValue"]
            for slice_key, metrics in result.slicing_metrics
            for name, value in metrics[""][""].items()}


def _frame(labels: np.ndarray, predictions: np.ndarray, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    weights = rng.choice([0.0, 1.0, 2.5], size=len(labels), p=[0.2, 0.6, 0.2])  # 0: a missing label
    return pd.DataFrame({"label": labels, "prediction": predictions, "weight": weights,
                         "device": rng.choice(["mobile", "desktop", "tablet"], size=len(labels))})


def _assert_same(ours: dict, theirs: dict, names):
    compared = [key for key in theirs if key[1] in names]
    assert len(compared) == 4 * len(names)  # overall and 3 devices, every metric
    for key in compared:
        assert ours[key] == pytest.approx(theirs[key], rel=1e-6), key


def test_a_binary_tasks_summary_equals_tfmas_mean_label_prediction_calibration_and_count():
    rng = np.random.default_rng(0)
    predictions = rng.uniform(size=3000)
    frame = _frame((rng.uniform(size=3000) < predictions * 0.8).astype(float), predictions, seed=1)
    names = ["mean_label", "mean_prediction", "calibration", "example_count"]
    theirs = _metrics(frame, ["MeanLabel", "MeanPrediction", "Calibration", "ExampleCount"])
    ours = _metrics(frame, ["DirectAUC", "CalibrationSummary"])
    _assert_same(ours, theirs, names)
    assert ours[((), "example_count")] == frame.weight.sum()


@pytest.mark.parametrize("fractional", [False, True])
def test_a_binary_tasks_auc_and_pr_auc_equal_tfmas(fractional):
    """On one direct histogram; fractional labels split into a positive and a negative part as TFMA's."""
    rng = np.random.default_rng(7)
    predictions = rng.uniform(size=3000)
    labels = (rng.uniform(size=3000) < predictions).astype(float)
    if fractional:
        labels = np.where(rng.uniform(size=3000) < 0.3, rng.uniform(size=3000), labels)
    frame = _frame(labels, predictions, seed=8)
    names = ["auc", "auc_precision_recall"]
    ours = _metrics(frame, ["DirectAUC", "DirectAUCPrecisionRecall"])
    _assert_same(ours, _metrics(frame, ["AUC", "AUCPrecisionRecall"]), names)
    assert 0.6 < ours[((), "auc")] < 0.9


def test_a_binary_tasks_log_loss_equals_tfmas_binary_cross_entropy():
    rng = np.random.default_rng(4)
    predictions = rng.uniform(0.01, 0.99, size=3000)
    frame = _frame((rng.uniform(size=3000) < predictions).astype(float), predictions, seed=5)
    _assert_same(_metrics(frame, ["BinaryLogLoss"]), _metrics(frame, ["BinaryCrossEntropy"]), ["binary_crossentropy"])


def _daily_elements(rng, tasks=("click", "like")) -> list:
    """A daily run's Evaluator inputs: predictions keyed by model, then output; labels and weights by output."""
    from tensorflow_model_analysis.metrics import metric_types

    return [metric_types.StandardMetricInputs({
        tfma.constants.LABELS_KEY: {t: np.array([float(rng.integers(2))]) for t in tasks},
        tfma.constants.PREDICTIONS_KEY: {m: {t: np.array([rng.uniform(0.01, 0.99)], np.float32) for t in tasks}
                                         for m in ("candidate", "baseline")},
        tfma.constants.EXAMPLE_WEIGHTS_KEY: {t: np.array([rng.choice([0.0, 1.0, 2.5])], np.float32) for t in tasks}})
        for _ in range(500)]


def _accumulated(combiner, elements) -> dict:
    """The combiner's output over the elements, added one by one as Beam would."""
    accumulator = combiner.create_accumulator()
    for element in elements:
        accumulator = combiner.add_input(accumulator, element)
    return combiner.extract_output(accumulator)


def test_log_loss_reads_each_models_outputs_as_tfma_does():
    from tensorflow_model_analysis.metrics import cross_entropy_metrics, metric_types

    from mtrec.pipeline import tfma_metrics

    elements = _daily_elements(np.random.default_rng(6))
    for model in ("candidate", "baseline"):
        key = metric_types.MetricKey(name="binary_crossentropy", model_name=model, output_name="like",
                                     example_weighted=True)
        theirs = cross_entropy_metrics._BinaryCrossEntropyCombiner(
            eval_config=None, model_name=model, output_name="like", metric_key=key, aggregation_type=None,
            class_weights=None, example_weighted=True)
        ours = tfma_metrics._LogLossCombiner(eval_config=None, model_name=model, output_name="like", metric_key=key,
                                             aggregation_type=None, class_weights=None, example_weighted=True)
        assert ours._direct_values(elements[0]) is not None  # not TFMA's road, which would agree anyway
        assert _accumulated(ours, elements)[key] == pytest.approx(_accumulated(theirs, elements)[key], rel=1e-6), model


def test_the_histogram_reads_each_models_outputs_as_tfma_does_and_refuses_labels_outside_0_1():
    from tensorflow_model_analysis.metrics import calibration_histogram, metric_types

    from mtrec.pipeline import tfma_metrics

    elements = _daily_elements(np.random.default_rng(10))
    for model in ("candidate", "baseline"):
        theirs = calibration_histogram.calibration_histogram(model_name=model, output_name="like",
                                                             example_weighted=True)[0].combiner
        ours = tfma_metrics._HistogramCombiner.replacing(theirs)
        assert ours._direct_values(elements[0]) is not None
        histograms = [[(b.bucket_id, b.weighted_labels, b.weighted_predictions, b.weighted_examples)
                       for b in _accumulated(combiner, elements)[theirs._key]] for combiner in (theirs, ours)]
        assert len(histograms[0]) > 100
        assert np.allclose(histograms[1], histograms[0], rtol=1e-6), model
    outside = metric_types.StandardMetricInputs({**elements[0], tfma.constants.LABELS_KEY: {"like": np.array([2.0])}})
    with pytest.raises(ValueError, match="label must be within"):
        ours.add_input(ours.create_accumulator(), outside)


def test_log_loss_merges_a_list_of_accumulators_counting_each_once():
    from tensorflow_model_analysis.metrics import metric_types

    from mtrec.pipeline import tfma_metrics

    combiner = tfma_metrics._LogLossCombiner(
        eval_config=None, model_name="", output_name="", metric_key=metric_types.MetricKey(name="binary_crossentropy"),
        aggregation_type=None, class_weights=None, example_weighted=False)
    parts = [combiner.create_accumulator() for _ in range(2)]
    parts[0].total_cross_entropy, parts[0].total_example_weights = 1.0, 1.0
    parts[1].total_cross_entropy, parts[1].total_example_weights = 3.0, 1.0
    merged = combiner.merge_accumulators(parts)
    assert (merged.total_cross_entropy, merged.total_example_weights) == (4.0, 2.0)


def test_a_regression_tasks_rmse_and_summary_equal_tfmas_from_one_pass():
    rng = np.random.default_rng(2)
    labels = rng.gamma(2.0, 10.0, size=3000)
    frame = _frame(labels, labels + rng.normal(0.0, 5.0, size=3000), seed=3)
    theirs = _metrics(frame, ["MeanSquaredError", "MeanAbsoluteError", "MeanLabel", "MeanPrediction", "ExampleCount"])
    ours = _metrics(frame, ["RootMeanSquaredError", "RegressionSummary"])
    for slice_key in {key[0] for key in theirs}:
        theirs[(slice_key, "root_mean_squared_error")] = np.sqrt(theirs[(slice_key, "mean_squared_error")])
    _assert_same(ours, theirs, ["root_mean_squared_error", "mean_absolute_error", "mean_label", "mean_prediction",
                                "example_count"])


def test_the_release_evaluator_passes_over_each_example_twice_per_binary_task_and_once_per_regression():
    """Each distinct combiner is one Python call per example and slice: what an Evaluator spends."""
    from tensorflow_model_analysis.metrics import metric_specs, metric_types

    from mtrec.config import PipelineConfig
    from mtrec.pipeline.evaluation import eval_config

    config = eval_config(PipelineConfig())
    computations = metric_specs.to_computations(config.metrics_specs, eval_config=config)
    combiners = {c for c in computations if isinstance(c, metric_types.MetricComputation)}
    per_output = {name: sorted(type(c.combiner).__name__ for c in combiners if c.keys[0].output_name == name)
                  for name in ("click", "like", "purchase", "dwell")}
    assert per_output["click"] == ["_HistogramCombiner", "_LogLossCombiner"]
    assert per_output["dwell"] == ["_RegressionSumsCombiner"]
    assert len(combiners) == 4 * 2 + 1
