"""The TFMA EvalConfig built from the task list: gates, report-only thresholds, labels and weights."""
import sys

from mtrec.config import PipelineConfig
from mtrec.pipeline.evaluation import eval_config


def _thresholds(config, **kwargs):
    """{(output, metric class): (value bound, change bound)} of the overall slice."""
    out = {}
    for spec in eval_config(config, **kwargs).metrics_specs:
        for metric in spec.metrics:
            for per_slice in metric.per_slice_thresholds:
                threshold = per_slice.threshold
                value = threshold.value_threshold
                bound = value.lower_bound.value if value.HasField("lower_bound") else value.upper_bound.value
                out[(spec.output_names[0] if spec.output_names else "", metric.class_name)] = (
                    bound, threshold.change_threshold.absolute.value)
    return out


def test_the_release_gate_checks_each_task_against_its_bound_and_tolerance():
    gates = _thresholds(PipelineConfig())
    assert gates[("click", "DirectAUC")] == (0.6, -0.02)
    assert gates[("like", "DirectAUC")] == (0.55, -0.02)
    assert gates[("dwell", "RootMeanSquaredError")] == (60.0, 1.0)


def test_a_report_only_evaluator_has_thresholds_no_model_can_fail():
    """The single-task and test-split Evaluators report; only the release Evaluator gates."""
    report = _thresholds(PipelineConfig(), gated=False)
    assert report[("click", "DirectAUC")] == (-sys.float_info.max, -sys.float_info.max)
    assert report[("dwell", "RootMeanSquaredError")] == (sys.float_info.max, sys.float_info.max)


def test_labels_and_weights_come_from_the_transform_features_signature():
    spec = eval_config(PipelineConfig()).model_specs[0]
    assert list(spec.preprocessing_function_names) == ["transform_features"]
    assert spec.signature_name == "evaluate" and spec.model_type == "tf_generic"
    tasks = ("click", "like", "purchase", "dwell", "review_positive")
    assert dict(spec.label_keys) == {t: t for t in tasks}
    assert dict(spec.example_weight_keys) == {t: f"{t}__weight" for t in tasks}


def test_a_lone_task_is_named_by_no_output():
    config = PipelineConfig.from_dict({"tasks": [{"name": "male", "label": "sex", "positive": "male"}]})
    spec = eval_config(config).model_specs[0]
    assert spec.label_key == "sex" and spec.example_weight_key == "male__weight"
    assert [list(m.output_names) for m in eval_config(config).metrics_specs] == [[]]


def test_slices_are_the_configured_features_unless_overall_only_is_asked_for():
    config = PipelineConfig()
    specs = eval_config(config).slicing_specs
    assert [list(s.feature_keys) for s in specs] == [[], ["device"], ["category"], []]
    assert dict(specs[-1].feature_values) == {"cold_start": "1"}  # the cold items; the others are not a slice
    assert [list(s.feature_keys) for s in eval_config(config, gated=False, sliced=False).slicing_specs] == [[]]


def test_the_cold_start_slice_needs_items_with_an_id():
    config = PipelineConfig.from_dict({"features": {"ids": ["user_id"]}})
    assert all(not s.feature_values for s in eval_config(config).slicing_specs)
