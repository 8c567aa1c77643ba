"""Missing values end to end: a log with optional fields left out (the shared small run) and a
wide ready table with missing cells and labels in the user's own split files, through the real
pipeline to a served model."""
import csv
import math
import os
import types

import numpy as np
import pytest

from mtrec.components.anomaly_gate import DataAnomalyError
from mtrec.config import PipelineConfig
from mtrec.data import missing, synthetic
from mtrec.pipeline import runner
from mtrec.serving.client import ServingClient
from tests.conftest import SMALL_RUN
from tests.serving.conftest import MODEL, start_local, wait_serving

MISSING_TABLE = pytest.mark.xdist_group("missing_table")


@SMALL_RUN
def test_a_log_with_optional_fields_left_out_counts_them_per_feature(small_run):
    missing_values = small_run.summary["missing_values"]
    # one impression line per example, so every blanked impression field is one missing value
    for name in ("device", "page", "position"):
        assert sum(split[name] for split in missing_values.values()) == small_run.blanked[name], name
    assert all(split["user_id"] == 0 and split["click"] == 0 for split in missing_values.values())
    # price and category come from the items table: every impression of a blanked item misses them
    assert sum(split["price"] for split in missing_values.values()) >= small_run.blanked["price"]
    assert small_run.summary["dead_letter"]["total"] == 0 and small_run.summary["pushed_model"]


def _split_files(table_csv, out_dir):
    """The user's own split files: rows 0-6 of every 10 to train, 7-8 to eval, 9 to test."""
    with open(table_csv, newline="") as f:
        reader = csv.DictReader(f)
        header, rows = reader.fieldnames, list(reader)
    parts = {"train": [r for i, r in enumerate(rows) if i % 10 < 7], "eval": [r for i, r in enumerate(rows) if i % 10 in (7, 8)],
             "test": [r for i, r in enumerate(rows) if i % 10 == 9]}
    os.makedirs(out_dir)
    for name, part in parts.items():
        with open(os.path.join(out_dir, f"{name}.csv"), "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=header)
            writer.writeheader()
            writer.writerows(part)
    return header, parts


@pytest.fixture(scope="module")
def missing_table_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("missing_table")
    synthetic.generate(str(root / "logs"), synthetic.SyntheticLogSpec(impressions=4000, days=2, seed=6))
    blanked = missing.write_example_table(str(root / "logs"), str(root / "all.csv"), missing_rate=0.08,
                                          label_missing_rate=0.1, seed=6, extra_columns=36)
    header, parts = _split_files(root / "all.csv", str(root / "table"))
    raw = PipelineConfig().to_dict()
    raw["data"] = {"source": "examples", "path": str(root / "table"), "format": "csv", "schema": "infer",
                   "splits": {"train": "train*.csv", "eval": "eval*.csv", "test": "test*.csv"}}
    raw["features"].update(ids=["item_id"], hashed={"user_id": 64},
                           numeric=["price", "user_tenure_days", "extra_0", "extra_1"],
                           categorical=raw["features"]["categorical"] + ["extra_2", "extra_5"])
    raw["training"]["epochs"] = 2
    for task in raw["tasks"]:
        task["gate"] = {"bound": None, "tolerance": 1e6}
    summary = runner.run(PipelineConfig.from_dict(raw), str(root / "work"), progress=lambda line: None)
    return types.SimpleNamespace(summary=summary, blanked=blanked, header=header, parts=parts)


@MISSING_TABLE
def test_a_wide_table_with_missing_cells_and_labels_trains_blesses_and_pushes(missing_table_run):
    summary, parts = missing_table_run.summary, missing_table_run.parts
    assert len(missing_table_run.header) >= 54
    assert summary["examples"] == {name: len(rows) for name, rows in parts.items()}
    assert summary["blessed"] and summary["pushed_model"] and summary["serving_check"]["passed"]
    assert set(summary["test"]) == set(summary["tasks"]) == {"click", "like", "purchase", "dwell", "review_positive"}
    assert summary["split_protocol"]["by"] == "files" and summary["split_protocol"]["reported"] == ["eval", "test"]


@MISSING_TABLE
def test_missing_values_are_counted_per_feature_and_split(missing_table_run):
    counts = missing_table_run.summary["missing_values"]
    for name in ("device", "category", "price", "extra_0", "extra_2", "like", "dwell"):
        assert sum(split[name] for split in counts.values()) == missing_table_run.blanked[name], name
    assert missing_table_run.blanked["price"] > 0.05 * 4000


@MISSING_TABLE
def test_a_task_is_measured_only_on_rows_that_have_its_label(missing_table_run):
    """like is measured given click: its mean label must be over clicked eval rows with a like."""
    rows = missing_table_run.parts["eval"]
    labelled = [float(r["like"]) for r in rows if r["click"] == "1" and r["like"] != ""]
    as_zero = [float(r["like"] or 0) for r in rows if r["click"] == "1"]  # what counting a missing label as 0 gives
    mean_label = missing_table_run.summary["tasks"]["like"]["mean_label"]
    assert mean_label == pytest.approx(np.mean(labelled), abs=1e-4)
    assert abs(np.mean(as_zero) - np.mean(labelled)) > 0.01  # the check can tell the two apart


def _typed(row, header):
    """A CSV row as raw features: None where the cell is empty; ints and floats as such."""
    out = {}
    for name in header:
        text = row[name]
        if text == "":
            out[name] = None
        elif name.startswith("extra_") or name in ("price", "user_tenure_days", "position", "hour"):
            out[name] = float(text) if "." in text or name == "price" else int(text)
        else:
            out[name] = text
    return out


@MISSING_TABLE
def test_rows_with_missing_values_are_served_alike_over_both_signatures(missing_table_run, tmp_path):
    base = os.path.dirname(missing_table_run.summary["pushed_model"])
    server = start_local(base)
    try:
        target = f"127.0.0.1:{server.grpc_port}"
        wait_serving(target)
        with ServingClient(target, MODEL, timeout=30.0) as client:
            names = set(client.input_dtypes("serving_raw"))
            rows = [{k: v for k, v in _typed(r, missing_table_run.header).items() if k in names}
                    for r in missing_table_run.parts["test"][:200]]
            assert sum(any(v is None for v in r.values()) for r in rows) > 50  # many rows lack something
            for name, dtype in client.input_dtypes("serving_raw").items():  # int features: typed by the model
                if dtype.is_floating:
                    for r in rows:
                        r[name] = None if r[name] is None else float(r[name])
            raw, examples = client.predict(rows), client.predict_examples(rows)
    finally:
        server.stop()
    for task in ("click", "like", "purchase", "dwell", "review_positive"):
        assert raw[task].shape == (200,) and np.all(np.isfinite(raw[task]))
        np.testing.assert_allclose(raw[task], examples[task], rtol=1e-5, atol=1e-6)
    assert not math.isclose(float(np.std(raw["click"])), 0.0)


def test_a_table_that_does_not_fit_the_config_stops_before_transform_naming_each_column(tmp_path):
    table = tmp_path / "table"
    table.mkdir()
    with open(table / "rows.csv", "w") as f:
        f.write("user,item,price,stars\n")
        f.writelines(f"u{i % 7},i{i % 5},{'cheap' if i % 4 else 'NA'},{i % 6}\n" for i in range(300))
    raw = PipelineConfig().to_dict()
    raw["data"] = {"source": "examples", "path": str(table), "format": "csv", "schema": "infer"}
    raw["features"] = {"ids": ["user", "item"], "categorical": ["device"], "numeric": ["price"]}
    raw["tasks"] = [{"name": "liked", "label": "stars"}]
    raw["slices"] = []
    with pytest.raises(DataAnomalyError) as stopped:
        runner.run(PipelineConfig.from_dict(raw), str(tmp_path / "work"), progress=lambda line: None)
    message = str(stopped.value)
    assert "column 'device' (features.categorical) is not in the data" in message
    assert "column 'price' is configured numeric but holds strings" in message
    assert "label 'stars' of binary task 'liked' ranges over [0, 5]" in message
    assert str(table) in message
    assert not os.path.exists(tmp_path / "work" / "pipeline" / "Transform")
