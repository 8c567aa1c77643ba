"""The daily loop on a three-day log: each day a span ingested once, a rolling window from MLMD, the
second day warm-started from the first day's blessed model, a rerun served from TFX's cache, a
sharply shifted day stopped before Transform with the feature named, the history of it all; and
the first day once more in another work dir, training the same model."""
import json
import os
import types

import numpy as np
import pytest
import tensorflow_transform as tft
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2

from mtrec import cli
from mtrec.components import spans
from mtrec.config import PipelineConfig
from mtrec.data import synthetic
from mtrec.models.multitask import build_network
from mtrec.pipeline import warm_start
from mtrec.pipeline.training import vocab_sizes
from mtrec.reporting import history

pytestmark = pytest.mark.xdist_group("daily")
DAYS = [synthetic.day_name(d) for d in range(3)]
CONFIG = """
text: {fields: {}}
training: {epochs: 2, batch_size: 512, warm_start_spans: 1}
slices: []
tasks:
  - {name: click, gate: {bound: null, tolerance: 1.0}}
  - {name: like, given: click, gate: {bound: null, tolerance: 1.0}}
  - {name: purchase, given: click, gate: {bound: null, tolerance: 1.0}}
"""


def _store(work):
    connection = metadata_store_pb2.ConnectionConfig()
    connection.sqlite.filename_uri = str(work / "metadata.db")
    return metadata_store.MetadataStore(connection)


def _executions(store, component):
    node = next(c for c in store.get_contexts_by_type("node") if c.name.endswith("." + component))
    return {e.id: e for e in store.get_executions_by_context(node.id)}


def _states_by_run(store, component):
    """[MLMD state of `component`'s execution in each pipeline run], oldest run first."""
    executions = _executions(store, component)
    states = []
    for run in sorted(store.get_contexts_by_type("pipeline_run"), key=lambda c: c.id):
        found = [executions[e.id] for e in store.get_executions_by_context(run.id) if e.id in executions]
        states.append(metadata_store_pb2.Execution.State.Name(found[0].last_known_state) if found else None)
    return states


@pytest.fixture(scope="module")
def daily(tmp_path_factory):
    root = tmp_path_factory.mktemp("daily")
    logs, work, config = root / "logs", root / "work", root / "daily.yaml"
    config.write_text(CONFIG)
    synthetic.generate(str(logs), synthetic.SyntheticLogSpec(impressions=6000, days=3, seed=3, shift_day=2,
                                                             taste_drift=synthetic.DAILY_TASTE_DRIFT), layout="daily")
    run = lambda span, work=work: cli.main(["run", "--work-dir", str(work), "--logs", str(logs),  # noqa: E731
                                            "--span", span, "--window-days", "2", "--config", str(config)])
    codes, summaries = [], []
    for span in (DAYS[0], DAYS[1], DAYS[1], "latest"):  # the second day twice; latest: the shifted third day
        codes.append(run(span))
        summaries.append(json.loads((work / "run_summary.json").read_text()))
    codes.append(run(DAYS[0], root / "again"))  # the first day once more, from nothing
    return types.SimpleNamespace(logs=logs, work=work, again=root / "again", codes=codes, summaries=summaries,
                                 history=history.read(str(work)), store=_store(work),
                                 config=PipelineConfig.from_dict({**__import__("yaml").safe_load(CONFIG),
                                                                  "data": {"source": "events", "path": str(logs),
                                                                           "span": DAYS[1], "split": "hash",
                                                                           "window_days": 2}}))


def test_each_span_is_ingested_once_and_a_rerun_is_served_from_the_cache(daily):
    assert daily.codes[:4] == [0, 0, 0, 3]  # 3: stopped before training
    examples = daily.store.get_artifacts_by_type("Examples")
    ingested = [a for a in examples if "examples_train" in a.custom_properties]
    assert sorted(a.properties["span"].int_value for a in ingested) == [spans.span_number(d) for d in DAYS]
    assert _states_by_run(daily.store, "LogExampleGen") == ["COMPLETE", "COMPLETE", "CACHED", "COMPLETE"]
    for component in ("Transform", "Trainer", "Evaluator", "Pusher"):
        assert _states_by_run(daily.store, component)[2] == "CACHED", component
    assert daily.summaries[2]["pushed_model"] == daily.summaries[1]["pushed_model"]


def test_the_second_day_trains_on_both_days_and_is_measured_on_its_own(daily):
    first, second = daily.summaries[0], daily.summaries[1]
    assert first["window"] == [DAYS[0]] and second["window"] == DAYS[:2] and second["span"] == DAYS[1]
    transform = sorted(_executions(daily.store, "Transform"))  # day 1, day 2, day 2's cached rerun
    inputs = [ev for ev in daily.store.get_events_by_execution_ids([transform[1]])
              if ev.type == metadata_store_pb2.Event.INPUT and ev.path.steps[0].key == "examples"]
    assert len(inputs) == 2  # both days' Examples, the first from the first run
    day2 = next(a for a in daily.store.get_artifacts_by_type("Examples")
                if a.properties["span"].int_value == spans.span_number(DAYS[1]) and "examples_eval" in a.custom_properties)
    assert second["examples"]["eval"] == day2.custom_properties["examples_eval"].int_value  # the day's own eval split
    oracle_rows = sum(1 for _ in open(daily.logs / DAYS[1] / "oracle.csv")) - 1
    assert sum(second["examples"].values()) == oracle_rows  # one day's impressions, not the window's
    assert second["blessed"] and all("auc" in second["tasks"][t] for t in ("click", "like", "purchase"))


def test_the_second_day_warm_starts_from_the_first_days_model(daily):
    assert [line["warm_start"] for line in daily.history] == [False, True, True, False]
    models = sorted(daily.store.get_artifacts_by_type("Model"), key=lambda a: a.id)
    assert [m.custom_properties["span"].int_value for m in models] == [spans.span_number(d) for d in DAYS[:2]]
    report = daily.summaries[1]["training"]["warm_start"]
    assert report["warm_start"] and report["from"].startswith(models[0].uri) and report["copied"] > 0
    assert report["newest_spans_only"]  # warm_start_spans 1: trained on the second day's examples only
    # Day 1 trains its 2 epochs; a warm start one pass (warm_start_epochs), with warm_start_patience.
    assert [s["training"]["epochs"] for s in daily.summaries[:2]] == [2, 1]
    assert [s["training"]["patience"] for s in daily.summaries[:2]] == [2, 1]
    assert report["embeddings"]["item_id"]["new"] > 0 and report["embeddings"]["item_id"]["known"] > 50
    # Before training: the second day's network, built as its Trainer built it, then restored.
    graphs = sorted(daily.store.get_artifacts_by_type("TransformGraph"), key=lambda a: a.id)
    old_tft, new_tft = tft.TFTransformOutput(graphs[0].uri), tft.TFTransformOutput(graphs[1].uri)
    network = build_network(daily.config, vocab_sizes(daily.config, new_tft), None)
    [(weight, rows)] = [(i, features["item_id"]) for i, features in warm_start.embedding_rows(network).items()]
    fresh = network.get_weights()[weight][rows].copy()
    again = warm_start.restore(network, os.path.join(models[0].uri, "Format-Serving"), new_tft, daily.config)
    assert again["embeddings"] == report["embeddings"]
    assert again["copied"] + again["kept_fresh"] + 1 == len(network.weights)  # every weight but the id table as it was
    with np.load(os.path.join(models[0].uri, warm_start.STATE_DIR, "weights.npz")) as saved:
        index = json.loads(open(os.path.join(models[0].uri, warm_start.STATE_DIR, "index.json")).read())
        [(position, (start, stop))] = [(i, t["item_id"]) for i, t in index["tables"].items()]
        old_table = saved[f"arr_{position}"][start:stop]
    old_vocab = [t.decode() for t in old_tft.vocabulary_by_name("item_id")]
    new_vocab = [t.decode() for t in new_tft.vocabulary_by_name("item_id")]
    table = network.get_weights()[weight][rows]
    known = next(t for t in new_vocab if t in old_vocab and t != "__missing__")
    new = next(t for t in new_vocab if t not in old_vocab)
    np.testing.assert_array_equal(table[new_vocab.index(known)], old_table[old_vocab.index(known)])
    np.testing.assert_array_equal(table[new_vocab.index(new)], fresh[new_vocab.index(new)])
    oov = slice(len(new_vocab), len(new_vocab) + daily.config.features.oov_buckets)
    np.testing.assert_array_equal(table[oov], old_table[len(old_vocab):])  # the OOV buckets keep theirs


def test_the_second_days_trainer_reads_its_windows_spans_each_with_its_own(daily):
    """What lets a warm-started day train on its newest span: the Trainer reads the window's
    ingested examples (Transform only analyses; the Trainer applies its graph), each artifact
    with its span."""
    trainer = sorted(_executions(daily.store, "Trainer"))[1]  # the second day's: two spans
    events = daily.store.get_events_by_execution_ids([trainer])
    inputs = daily.store.get_artifacts_by_id([ev.artifact_id for ev in events if ev.type == metadata_store_pb2.Event.INPUT
                                              and ev.path.steps[0].key == "examples"])
    ingested = {a.id for a in daily.store.get_artifacts_by_type("Examples") if "/LogExampleGen/" in a.uri}
    assert len(inputs) == 2 and {a.id for a in inputs} <= ingested
    assert sorted(a.properties["span"].int_value for a in inputs) == [spans.span_number(d) for d in DAYS[:2]]


def test_the_same_day_trains_the_same_model_in_another_work_dir(daily):
    """Reproducible: Beam writes a day's examples in another order each run and sums their
    statistics in another, and the Trainer runs after other work in the process; none of it may
    change the model the same logs and `training.seed` train."""
    assert daily.codes[4] == 0
    trained = []
    for work in (daily.work, daily.again):
        first = min(_store(work).get_artifacts_by_type("Model"), key=lambda a: a.id)
        with np.load(os.path.join(first.uri, warm_start.STATE_DIR, "weights.npz")) as saved:
            trained.append([saved[name] for name in sorted(saved.files, key=lambda n: int(n[4:]))])
    assert len(trained[0]) == len(trained[1]) > 10
    for weight, again in zip(*trained):
        np.testing.assert_array_equal(weight, again)
    again = json.loads((daily.again / "run_summary.json").read_text())
    assert again["tasks"] == daily.summaries[0]["tasks"]


def test_a_sharply_shifted_day_stops_before_transform_naming_the_feature(daily):
    stopped = daily.history[3]
    assert stopped["span"] == DAYS[2] and stopped["drift"] == ["device"] and not stopped["blessed"]
    assert f"device: drifted since span {DAYS[1]}: L-infinity distance" in stopped["stopped"]
    assert stopped["drift_distances"]["device"] > 0.3
    assert _states_by_run(daily.store, "Transform")[3] is None  # never reached
    slow = daily.history[1]["drift_distances"]  # the slow daily drift passes the default thresholds
    assert slow and max(slow.values()) < 0.1 and daily.history[1]["drift"] == []


def test_history_prints_a_row_per_run_and_plots_them(daily, capsys):
    assert cli.main(["history", "--work-dir", str(daily.work)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:2] == ["span", "warm"] and "click" in out[0]
    assert [row.split()[0] for row in out[1:5]] == [DAYS[0], DAYS[1], DAYS[1], DAYS[2]]
    assert out[4].rstrip().endswith("device")
    assert os.path.getsize(daily.work / "history.png") > 10_000
