"""What a task type means, in one table: every site (config defaults, model heads, Keras metrics,
TFMA metrics and gates, the run summary and its printed table) reads it from here.

Plain Python (no TensorFlow), so the config can use it before anything heavy loads.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

BINARY = "binary"
REGRESSION = "regression"
RETRIEVAL = "retrieval"


@dataclass(frozen=True)
class TaskType:
    """One task type.

    Args:
      activation: of the task's output layer (None: linear).
      default_loss: Keras loss name when the task names none.
      keras_metric: Keras metric class measured on the eval split every epoch, logged as `val_<task>_<short>`.
      short: the metric's short name in training logs and the printed table.
      gate_class: TFMA metric class the release gate checks; `gate_metric` is its name in results.
      higher_is_better: direction of the gate metric.
      report_classes, report_names: the other TFMA metrics reported (classes and result names).
    """

    activation: Optional[str]
    default_loss: str
    keras_metric: Optional[str]
    short: str
    gate_class: Optional[str]
    gate_metric: str
    higher_is_better: bool
    report_classes: Tuple[str, ...] = ()
    report_names: Tuple[str, ...] = ()

    @property
    def evaluated_by_tfma(self) -> bool:
        """Measured per example by TFMA (retrieval is measured over the whole catalogue instead)."""
        return self.gate_class is not None

    @property
    def metric_names(self) -> Tuple[str, ...]:
        """TFMA result names, gated first, as the summary reports them."""
        return (self.gate_metric, *self.report_names, "example_count")

    def improvement(self, new: float, old: float) -> float:
        """How much better `new` is than `old` (positive: better), whatever the direction."""
        return new - old if self.higher_is_better else old - new


TASK_TYPES = {
    BINARY: TaskType(
        activation="sigmoid", default_loss="binary_crossentropy", keras_metric="AUC", short="auc",
        # mtrec's (`mtrec.pipeline.tfma_metrics`), TFMA's values and names: DirectAUC and
        # DirectAUCPrecisionRecall are TFMA's AUC and PR-AUC on one histogram, BinaryLogLoss TFMA's
        # BinaryCrossEntropy (not Keras's, a TensorFlow metric wrapped per slice), each reading an
        # example's values directly; CalibrationSummary: calibration, mean label and prediction and
        # example count off that histogram
        gate_class="DirectAUC", gate_metric="auc", higher_is_better=True,
        report_classes=("DirectAUCPrecisionRecall", "BinaryLogLoss", "CalibrationSummary"),
        report_names=("auc_precision_recall", "binary_crossentropy", "calibration", "mean_label", "mean_prediction")),
    REGRESSION: TaskType(
        activation=None, default_loss="huber", keras_metric="RootMeanSquaredError", short="rmse",
        # mtrec's native TFMA RootMeanSquaredError, not Keras's, and its RegressionSummary (MAE, mean
        # label and prediction, example count) from the same pass (`mtrec.pipeline.tfma_metrics`)
        gate_class="RootMeanSquaredError", gate_metric="root_mean_squared_error", higher_is_better=False,
        report_classes=("RegressionSummary",),
        report_names=("mean_absolute_error", "mean_label", "mean_prediction")),
    RETRIEVAL: TaskType(
        activation=None, default_loss="categorical_crossentropy", keras_metric=None, short="top-100",
        gate_class=None, gate_metric="top_100", higher_is_better=True),
}
