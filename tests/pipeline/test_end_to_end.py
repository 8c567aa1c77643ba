"""The whole pipeline with real TFX components, Beam DirectRunner, MLMD and SavedModels, on a small
synthetic log with malformed lines mixed in."""
import collections
import csv
import glob
import json
import os
import types

import numpy as np
import pytest
import tensorflow as tf

from mtrec.components import events as ev
from mtrec.components.anomaly_gate import DataAnomalyError
from mtrec.config import DataConfig, PipelineConfig
from mtrec.data import malformed, synthetic
from mtrec.pipeline import runner

IMPRESSIONS = 150_000
MALFORMED = 35
# Tests sharing the 150k-impression run stay on one pytest-xdist worker; the others spread out.
SHARED_RUN = pytest.mark.xdist_group("e2e")
TABLE_RUN = pytest.mark.xdist_group("table_run")  # the smoke run on a ready example table


def _config(logs, **overrides) -> PipelineConfig:
    raw = PipelineConfig(data=DataConfig(source="events", path=str(logs))).to_dict()
    for key, value in overrides.items():
        raw[key] = value
    return PipelineConfig.from_dict(raw)


def _smoke_config(raw: dict) -> PipelineConfig:
    """Two epochs and gates any model passes: for runs that check plumbing, not quality."""
    raw["training"]["epochs"] = 2
    for task in raw["tasks"]:
        task["gate"] = {"bound": None, "tolerance": 1e6}
    return PipelineConfig.from_dict(raw)


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    path = tmp_path_factory.mktemp("logs")
    counts = synthetic.generate(str(path), synthetic.SyntheticLogSpec(impressions=IMPRESSIONS, days=4, seed=11))
    return path, counts, malformed.inject(str(path / "events.jsonl"), MALFORMED, seed=11)


@pytest.fixture(scope="module")
def work_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("work")


@pytest.fixture(scope="module")
def first_run(logs, work_dir):
    path, _, _ = logs
    return runner.run(_config(path), str(work_dir), data_dir=str(path), progress=lambda line: None)


@SHARED_RUN
def test_counts_reconcile_with_the_dead_letter_output(first_run, logs):
    path, counts, expected = logs
    lines = sum(len(open(path / name).read().splitlines()) for name in ("events.jsonl", "items.jsonl", "users.jsonl"))
    dead_letter = first_run["dead_letter"]
    written = [json.loads(line) for f in glob.glob(os.path.join(dead_letter["uri"], "dead_letter*")) for line in open(f)]
    assert first_run["input_lines"] == lines
    assert first_run["accepted_lines"] + dead_letter["total"] == lines
    assert dead_letter["total"] == MALFORMED == len(written)
    assert dead_letter["by_reason"] == dict(expected)
    assert sum(first_run["examples"].values()) == counts["impression"]


@SHARED_RUN
def test_blessed_model_is_pushed_in_the_tf_serving_layout(first_run, work_dir):
    assert first_run["blessed"] and first_run["failed_gates"] == []
    pushed = first_run["pushed_model"]
    base = os.path.join(str(work_dir), "serving", "mtrec")
    assert os.path.dirname(pushed) == base and os.path.basename(pushed).isdigit()
    assert os.listdir(base) == [os.path.basename(pushed)]
    assert os.path.exists(os.path.join(pushed, "saved_model.pb")) and os.path.isdir(os.path.join(pushed, "variables"))
    assert first_run["serving_check"] == {"passed": True, "warmup_requests": 100, "problem": ""}
    assert os.path.getsize(os.path.join(pushed, "assets.extra", "tf_serving_warmup_requests")) > 10_000


@SHARED_RUN
def test_every_binary_task_is_within_003_auc_of_the_oracle(first_run):
    for task in ("click", "like", "purchase"):
        metrics = first_run["tasks"][task]
        assert 0.5 < metrics["oracle_auc"] < 1
        assert metrics["oracle_auc"] - metrics["auc"] <= 0.03, (task, metrics)
    assert first_run["tasks"]["dwell"]["root_mean_squared_error"] > 0


@SHARED_RUN
def test_run_summary_json_has_the_documented_fields(first_run, work_dir):
    with open(os.path.join(str(work_dir), runner.SUMMARY_FILE)) as f:
        written = json.load(f)
    for key in ("input_lines", "examples", "dead_letter", "tasks", "blessed", "pushed_model"):
        assert key in written
    assert set(written["dead_letter"]) >= {"total", "by_reason"}
    assert set(written["tasks"]) == {"click", "like", "purchase", "dwell"}
    assert {"auc", "auc_precision_recall", "binary_crossentropy", "calibration", "oracle_auc"} <= set(written["tasks"]["click"])
    assert {"root_mean_squared_error", "mean_absolute_error"} <= set(written["tasks"]["dwell"])
    assert {"device=mobile", "device=desktop", "device=tablet"} <= set(written["tasks"]["click"]["slices"])
    assert written["plot"].endswith(".png") and os.path.getsize(written["plot"]) > 10_000


RAW = {"user_id": [b"u1", b"u-never-seen"], "item_id": [b"i2", b"i-never-seen"], "device": [b"mobile", b"desktop"],
       "page": [b"home", b"search"], "position": [0, 7], "hour": [9, 23], "age_bucket": [b"25-34", b"55+"],
       "region": [b"north", b"islands"], "category": [b"news", b"a-new-category"], "price": [9.99, 120.0],
       "user_tenure_days": [30, 0]}


def _serialized(raw):
    examples = []
    for i in range(len(raw["user_id"])):
        feature = {}
        for name, values in raw.items():
            value = values[i]
            if isinstance(value, bytes):
                feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))
            elif isinstance(value, float):
                feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=[value]))
            else:
                feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
        examples.append(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    return tf.constant(examples)


@SHARED_RUN
def test_both_signatures_give_identical_named_outputs_and_handle_unseen_ids(first_run):
    model = tf.saved_model.load(first_run["pushed_model"])
    from_examples = model.signatures["serving_default"](examples=_serialized(RAW))
    raw_spec = model.signatures["serving_raw"].structured_input_signature[1]
    from_tensors = model.signatures["serving_raw"](**{name: tf.constant(RAW[name], spec.dtype) for name, spec in raw_spec.items()})
    assert sorted(from_examples) == sorted(from_tensors) == ["click", "dwell", "like", "purchase"]
    for name in from_examples:
        assert from_examples[name].shape == (2, 1)
        np.testing.assert_allclose(from_examples[name].numpy(), from_tensors[name].numpy(), rtol=1e-6)
        assert np.all(np.isfinite(from_examples[name].numpy()))
    for name in ("click", "like", "purchase"):
        assert np.all((from_examples[name].numpy() > 0) & (from_examples[name].numpy() < 1))


def test_schema_violation_stops_the_run_before_transform(tmp_path):
    logs = tmp_path / "logs"
    synthetic.generate(str(logs), synthetic.SyntheticLogSpec(impressions=2000, days=2, seed=3))
    text = (logs / "events.jsonl").read_text()
    (logs / "events.jsonl").write_text(text.replace('"device": "tablet"', '"device": "smart-tv"', 25))
    with pytest.raises(DataAnomalyError, match=r"device: .*smart-tv|device: Unexpected string values"):
        runner.run(_config(logs), str(tmp_path / "work"), data_dir=str(logs), progress=lambda line: None)
    assert not os.path.exists(tmp_path / "work" / "pipeline" / "Transform")
    assert not os.path.exists(tmp_path / "work" / "pipeline" / "Trainer")


def _example_table(logs, out_csv):
    """Joins a generated log in plain Python into a ready example table, as teams often already have."""
    users = {u["user_id"]: ev.parse_user(u) for u in map(json.loads, open(logs / "users.jsonl"))}
    items = {i["item_id"]: ev.parse_item(i) for i in map(json.loads, open(logs / "items.jsonl"))}
    groups = collections.defaultdict(list)
    for line in open(logs / "events.jsonl"):
        event = ev.parse_event(json.loads(line))
        groups[event["impression_id"]].append((event, line))
    rows = [ev.join_impression(group, users, items)[0] for group in groups.values()]
    with open(out_csv, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[k for k in rows[0] if k != "lines"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return rows


@pytest.fixture(scope="module")
def table_run(tmp_path_factory):
    """One smoke run for three kinds of plumbing at once: a ready CSV example table through TFX's
    CsvExampleGen, a single-task config with its baseline, and BeamDagRunner as the orchestrator."""
    root = tmp_path_factory.mktemp("table_run")
    logs, table = root / "logs", root / "table"
    synthetic.generate(str(logs), synthetic.SyntheticLogSpec(impressions=6000, days=2, seed=4))
    table.mkdir()
    rows = _example_table(logs, table / "examples.csv")
    raw = PipelineConfig().to_dict()
    raw["data"] = {"source": "examples", "path": str(table), "format": "csv", "split": "hash", "schema": "infer"}
    raw["tasks"] = [t for t in raw["tasks"] if t["name"] == "click"]
    raw.update(baselines=True, orchestrator="beam")
    config, progress = _smoke_config(raw), []
    summary = runner.run(config, str(root / "work"), progress=progress.append)
    return types.SimpleNamespace(summary=summary, rows=rows, progress=progress, config=config, work_dir=root / "work")


@TABLE_RUN
def test_a_ready_csv_example_table_runs_through_tfx_example_gen(table_run):
    summary = table_run.summary
    assert sum(summary["examples"].values()) == len(table_run.rows) == 6000
    assert summary["dead_letter"] is None
    assert summary["blessed"] and summary["pushed_model"]
    assert "oracle_auc" not in summary["tasks"]["click"]  # the table has no generator behind it


@TABLE_RUN
def test_a_single_task_config_with_baselines_is_evaluated_and_compared(table_run):
    """TFMA unwraps a lone model output; the `evaluate` signature and config keep one task working."""
    summary = table_run.summary
    assert set(summary["tasks"]) == {"click"} and 0.5 < summary["tasks"]["click"]["auc"] < 1
    assert set(summary["stl"]) == {"click"} and summary["stl"]["click"]["metric"] == "auc"


@TABLE_RUN
def test_beam_dag_runner_runs_the_same_pipeline(table_run):
    finished = {line.split()[0] for line in table_run.progress if " done in " in line}
    assert {"CsvExampleGen", "Transform", "Trainer", "Evaluator", "Pusher"} <= finished, table_run.progress


@TABLE_RUN
def test_impossible_threshold_blocks_the_push_and_reuses_the_cache(table_run):
    raw = table_run.config.to_dict()  # the same run but for the gate, so every step before the Evaluator is cached
    raw["tasks"][0]["gate"] = {"bound": 0.999, "tolerance": 0.02}
    progress = []
    summary = runner.run(PipelineConfig.from_dict(raw), str(table_run.work_dir), progress=progress.append)
    assert not summary["blessed"] and summary["pushed_model"] is None
    assert any(g.startswith("click/auc: value") for g in summary["failed_gates"])
    pushed = os.path.basename(table_run.summary["pushed_model"])
    assert os.listdir(os.path.join(str(table_run.work_dir), "serving", "mtrec")) == [pushed]
    reused = [progress[i - 1].split()[0] for i, line in enumerate(progress) if "reused from TFX cache" in line]
    assert {"CsvExampleGen", "Transform", "Trainer"} <= set(reused), progress
