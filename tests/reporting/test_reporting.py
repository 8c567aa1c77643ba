"""The run summary's readers and its printed table, on hand-made summaries (no pipeline run)."""
from mtrec.config import PipelineConfig
from mtrec.reporting.summary import single_task_table, split_protocol
from mtrec.reporting.table import format_summary

BASE = {"examples": {"train": 800, "eval": 200}, "blessed": True, "failed_gates": [], "pushed_model": "/m/1",
        "dead_letter": None}


def _rows(text):
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("task"))
    return lines[start], lines[start + 2:start + 2 + 2]


def test_columns_stay_aligned_for_long_task_names_and_oracle_columns_need_an_oracle():
    summary = dict(BASE, tasks={"click_through_in_the_first_week": {"auc": 0.71234, "calibration": 1.01},
                                "dwell": {"root_mean_squared_error": 12.5}})
    header, rows = _rows(format_summary(summary))
    assert "oracle" not in header and "gap" not in header
    assert header.index("eval") + 4 == rows[0].index("0.7123") + 6 == rows[1].index("12.5000") + 7
    assert rows[0].startswith("click_through_in_the_first_week  auc")


def test_oracle_and_test_columns_appear_when_the_summary_has_them():
    summary = dict(BASE, tasks={"click": {"auc": 0.7, "oracle_auc": 0.75, "gap_to_oracle": 0.05}},
                   test={"click": {"auc": 0.69}}, missing_values={"train": {"price": 80, "device": 0}},
                   split_protocol={"by": "hash of the example", "reported": ["eval", "test"]})
    text = format_summary(summary)
    header, rows = _rows(text)
    assert header.split()[:7] == ["task", "metric", "eval", "test", "oracle", "gap", "other"]
    assert rows[0].split()[:6] == ["click", "auc", "0.7000", "0.6900", "0.7500", "0.0500"]
    assert "Missing values in the train split: price 80 (10.0%)" in text and "device" not in text.split("Missing")[1].split("\n")[0]
    assert "reported on eval and test" in text


def test_single_task_deltas_are_positive_when_sharing_helped_whatever_the_direction():
    config = PipelineConfig()
    table = single_task_table({"click": {"auc": 0.72}, "dwell": {"root_mean_squared_error": 10.0}},
                              {"click": {"auc": 0.70}, "dwell": {"root_mean_squared_error": 11.0}}, config)
    assert round(table["click"]["delta"], 6) == 0.02 and not table["click"]["negative_transfer"]
    assert table["dwell"]["delta"] == 1.0 and table["dwell"]["metric"] == "root_mean_squared_error"


def test_the_split_protocol_says_what_each_split_was_for():
    files = PipelineConfig.from_dict({"data": {"source": "examples", "path": "/t", "format": "csv",
                                               "splits": {"train": "tr*", "eval": "ev*", "test": "te*"}}})
    assert split_protocol(files) == {"by": "files", "patterns": {"train": "tr*", "eval": "ev*", "test": "te*"},
                                     "trained_on": "train", "early_stopping_on": "eval", "gated_on": "eval",
                                     "reported": ["eval", "test"]}
    assert split_protocol(PipelineConfig())["reported"] == ["eval"]
