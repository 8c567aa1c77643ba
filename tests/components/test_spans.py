"""Daily log folders as TFX spans, and the resolvers that pick a window of them from MLMD."""
import pytest
from tfx.types import standard_artifacts

from mtrec.components import spans
from mtrec.config import ConfigError, PipelineConfig


def _artifact(kind, id_, span=None, blessed=None):
    artifact = kind()
    artifact.id = id_
    if span is not None:
        artifact.set_int_custom_property("span", span)
    return artifact


def test_span_numbers_are_tfxs_days_since_1970_and_folders_resolve(tmp_path):
    assert spans.span_number("1970-01-02") == 1 and spans.span_date(spans.span_number("2026-01-07")) == "2026-01-07"
    with pytest.raises(ValueError, match="expected a date"):
        spans.span_number("yesterday")
    with pytest.raises(FileNotFoundError, match="no YYYY-MM-DD folders"):
        spans.resolve_span(str(tmp_path), "latest")
    for day in ("2026-01-02", "2026-01-01", "notes"):
        (tmp_path / day).mkdir()
    assert spans.day_folders(str(tmp_path)) == ["2026-01-01", "2026-01-02"]
    assert spans.resolve_span(str(tmp_path), "latest") == "2026-01-02"
    assert spans.resolve_span(str(tmp_path), "2026-01-01") == "2026-01-01"
    with pytest.raises(FileNotFoundError, match=r"no folder .*2026-01-05 \(have 2026-01-01 \.\. 2026-01-02\)"):
        spans.resolve_span(str(tmp_path), "2026-01-05")


def test_the_window_takes_the_newest_artifact_of_each_span_in_range():
    examples = [_artifact(standard_artifacts.Examples, i, span) for i, span in
                enumerate([10, 11, 12, 11, 13, 9], start=1)]  # span 11 ingested twice: id 4 replaces id 2
    window = spans.SpanWindowStrategy(first_span=10, last_span=12, num_spans=3)
    assert [a.id for a in window.resolve_artifacts(None, {"examples": examples})["examples"]] == [3, 4, 1]
    assert [a.id for a in spans.SpanWindowStrategy(0, 12, 2).resolve_artifacts(None, {"e": examples})["e"]] == [3, 4]
    assert spans.SpanWindowStrategy(0, 8, 1).resolve_artifacts(None, {"e": examples}) == {"e": []}


def test_the_baseline_is_the_latest_model_blessed_on_an_earlier_day():
    models = [_artifact(standard_artifacts.Model, i, span) for i, span in ((1, 10), (2, 11), (3, 12))]
    blessings = []
    for model in models:
        blessing = standard_artifacts.ModelBlessing()
        blessing.id = 100 + model.id
        blessing.set_int_custom_property("blessed", 1)
        blessing.set_int_custom_property("current_model_id", model.id)
        blessings.append(blessing)
    inputs = lambda: {"model": list(models), "model_blessing": list(blessings)}  # noqa: E731
    assert [m.id for m in spans.BlessedBeforeSpanStrategy(12).resolve_artifacts(None, inputs())["model"]] == [2]
    assert [m.id for m in spans.BlessedBeforeSpanStrategy(13).resolve_artifacts(None, inputs())["model"]] == [3]
    assert spans.BlessedBeforeSpanStrategy(10).resolve_artifacts(None, inputs())["model"] == []


def test_a_daily_config_is_checked_naming_the_key():
    daily = {"source": "events", "path": "/logs", "span": "latest", "split": "hash", "window_days": 3}
    assert PipelineConfig.from_dict({"data": daily}).data.window_days == 3
    for change, key in (({"span": "monday"}, "data.span"), ({"split": "time"}, "data.split"),
                        ({"window_days": 0}, "data.window_days"), ({"source": "synthetic"}, "data.span")):
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            PipelineConfig.from_dict({"data": {**daily, **change}})
    with pytest.raises(ConfigError, match=r"drift\.device"):
        PipelineConfig.from_dict({"drift": {"features": {"device": -1}}})
