"""LogExampleGen's Beam pipeline on the DirectRunner: nothing lost, everything counted."""
import collections
import csv
import glob
import json
import shutil

import apache_beam as beam
import pytest
import tensorflow as tf

from mtrec.components import events as ev
from mtrec.components import log_example_gen as leg
from mtrec.data import malformed, missing, synthetic


def test_the_cache_key_holds_for_the_same_files_and_moves_when_one_changes(tmp_path):
    """LogExampleGen's `input_fingerprint` property is what lets TFX reuse its output on a rerun."""
    for name in ("events.jsonl", "items.jsonl", "users.jsonl"):
        (tmp_path / name).write_text('{"a": 1}\n')
    first = leg.input_fingerprint(str(tmp_path))
    assert leg.input_fingerprint(str(tmp_path)) == first
    with open(tmp_path / "events.jsonl", "a") as f:
        f.write('{"a": 2}\n')
    appended = leg.input_fingerprint(str(tmp_path))
    assert appended != first
    (tmp_path / "events-2.jsonl").write_text("")  # a new file, even empty
    assert leg.input_fingerprint(str(tmp_path)) not in (first, appended)


def _ingest(data_dir, out_dir, input_format="jsonl", split="time", eval_percent=20, test_days=0):
    pipeline = beam.Pipeline(argv=["--direct_running_mode=in_memory"])
    leg.build_ingestion(pipeline, str(data_dir), input_format, split, 1, eval_percent,
                        str(out_dir / "examples"), str(out_dir / "dead"), test_days=test_days,
                        reviews_uri=str(out_dir / "reviews"))
    result = pipeline.run()
    result.wait_until_finish()
    return leg.summarize_counts(leg.read_counters(result))


def _examples(out_dir, split):
    files = glob.glob(str(out_dir / "examples" / f"Split-{split}" / "*"))
    return [tf.train.Example.FromString(r) for r in tf.data.TFRecordDataset(files, compression_type="GZIP").as_numpy_iterator()]


def _value(example, name):
    feature = example.features.feature[name]
    return getattr(feature, feature.WhichOneof("kind")).value[0]


def _dead_letter(out_dir):
    return [json.loads(line) for f in glob.glob(str(out_dir / "dead" / "*")) for line in open(f)]


@pytest.fixture(scope="module")
def clean_log(tmp_path_factory):
    path = tmp_path_factory.mktemp("clean")
    counts = synthetic.generate(str(path), synthetic.SyntheticLogSpec(impressions=3000, days=3, seed=5))
    return path, counts


def test_malformed_lines_are_counted_and_kept_and_nothing_is_lost(tmp_path, clean_log):
    clean, counts = clean_log
    data = tmp_path / "logs"
    data.mkdir()
    for name in ("events.jsonl", "items.jsonl", "users.jsonl"):
        (data / name).write_text((clean / name).read_text())
    expected = malformed.inject(str(data / "events.jsonl"), 35, seed=1)
    with open(data / "users.jsonl", "a") as f:
        f.write((clean / "users.jsonl").read_text().splitlines()[0] + "\n")  # a second row for u0
    with open(data / "items.jsonl", "a") as f:
        f.write('{"item_id": "i-broken", "category": \n')
    with open(data / "events.jsonl", "a") as f:
        f.write(json.dumps({"event": "impression", "impression_id": "stranger", "ts": synthetic.START_MS,
                            "user_id": "u-unknown", "item_id": "i1", "position": 0, "device": "mobile", "page": "home"}) + "\n")
    expected.update({"duplicate_record": 1, "invalid_json": 1, "unknown_user": 1})

    summary = _ingest(data, tmp_path / "out")

    lines = sum(len((data / n).read_text().splitlines()) for n in ("events.jsonl", "items.jsonl", "users.jsonl"))
    dead = _dead_letter(tmp_path / "out")
    assert summary["input_lines"] == lines
    assert summary["accepted_lines"] + summary["dead_letter"]["total"] == lines
    assert summary["dead_letter"]["by_reason"] == dict(expected)
    assert len(dead) == summary["dead_letter"]["total"]
    assert sorted(d["reason"] for d in dead) == sorted(expected.elements())
    assert all(d["reason"] in ev.REASONS and d["detail"] for d in dead)
    refused_lines = {d["line"] for d in dead}
    assert '{"item_id": "i-broken", "category": ' in refused_lines
    assert sum(summary["examples"].values()) == counts["impression"]


def test_time_split_puts_the_last_day_in_eval_with_entire_space_labels(tmp_path, clean_log):
    clean, counts = clean_log
    summary = _ingest(clean, tmp_path)
    assert summary["dead_letter"]["total"] == 0
    train, evaluation = _examples(tmp_path, "train"), _examples(tmp_path, "eval")
    assert len(train) == summary["examples"]["train"] and len(evaluation) == summary["examples"]["eval"]
    last_day = synthetic.START_MS // synthetic.DAY_MS + 2
    assert {_value(e, "ts") // synthetic.DAY_MS for e in evaluation} == {last_day}
    assert max(_value(e, "ts") // synthetic.DAY_MS for e in train) == last_day - 1
    everything = train + evaluation
    assert sum(_value(e, "click") for e in everything) == counts["click"]
    assert sum(_value(e, "like") for e in everything) == counts["like"]
    assert all(_value(e, "like") <= _value(e, "click") and _value(e, "purchase") <= _value(e, "click") for e in everything)
    assert all((_value(e, "dwell") > 0) == bool(_value(e, "click")) for e in everything)
    unreviewed = next(e for e in everything if "review_positive" not in e.features.feature)
    assert set(unreviewed.features.feature) == {
        "impression_id", "ts", "user_id", "item_id", "position", "device", "page", "hour", "age_bucket", "region",
        "user_tenure_days", "category", "price", "title", "click", "like", "purchase", "dwell", "rating",
        "item_reviews_before"}


def _to_csv(src, dst, name, columns):
    with open(dst / f"{name}.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for line in (src / f"{name}.jsonl").read_text().splitlines():
            writer.writerow(json.loads(line))


def test_csv_logs_give_the_same_examples_as_jsonl(tmp_path, clean_log):
    clean, counts = clean_log
    data = tmp_path / "csv"
    data.mkdir()
    _to_csv(clean, data, "events", ev.CSV_EVENT_COLUMNS)
    _to_csv(clean, data, "items", list(ev.ITEM_FIELDS) + ["description"])  # columns the join does not use too
    _to_csv(clean, data, "users", list(ev.USER_FIELDS) + ["about"])
    summary = _ingest(data, tmp_path / "out", input_format="csv")
    assert summary["dead_letter"]["total"] == 0
    assert sum(summary["examples"].values()) == counts["impression"]
    clicks = sum(_value(e, "click") for split in ("train", "eval") for e in _examples(tmp_path / "out", split))
    assert clicks == counts["click"]


def test_hash_split_sends_about_eval_percent_to_eval(tmp_path, clean_log):
    clean, counts = clean_log
    summary = _ingest(clean, tmp_path, split="hash", eval_percent=30)
    share = summary["examples"]["eval"] / counts["impression"]
    assert 0.25 < share < 0.35



def test_hash_split_buckets_are_md5_based_and_stable():
    # md5("imp-0-00000001")[:8] % 100 == 32, md5("imp-0-00000002") -> 78, md5("7/imp-0-00000001") -> 90:
    # the split must not change between versions, or a rerun would mix train and eval.
    assert leg.hash_split("imp-0-00000001", 33) == 1 and leg.hash_split("imp-0-00000001", 32) == 0
    assert leg.hash_split("imp-0-00000002", 20, test_percent=59) == 2
    assert leg.hash_split("imp-0-00000002", 20, test_percent=58) == 0
    assert leg.hash_split("imp-0-00000001", 91, seed=7) == 1 and leg.hash_split("imp-0-00000001", 90, seed=7) == 0


def test_time_split_with_test_days_holds_out_the_last_days(tmp_path, clean_log):
    clean, counts = clean_log
    summary = _ingest(clean, tmp_path, test_days=1)
    assert set(summary["examples"]) == {"train", "eval", "test"}
    days = {split: {e.features.feature["ts"].int64_list.value[0] // 86_400_000 for e in _examples(tmp_path, split)}
            for split in ("train", "eval", "test")}
    assert max(days["train"]) < min(days["eval"]) and max(days["eval"]) < min(days["test"])
    assert len(days["test"]) == 1 and sum(summary["examples"].values()) == counts["impression"]


def test_optional_fields_left_out_of_the_log_are_missing_features_not_dead_letters(tmp_path, clean_log):
    clean, counts = clean_log
    data = tmp_path / "logs"
    shutil.copytree(clean, data)
    blanked = missing.blank_log_fields(str(data), rate=0.1, seed=1)
    summary = _ingest(data, tmp_path / "out")
    assert summary["dead_letter"]["total"] == 0 and sum(summary["examples"].values()) == counts["impression"]
    examples = [e for split in ("train", "eval") for e in _examples(tmp_path / "out", split)]
    without = collections.Counter(name for e in examples for name in ("device", "page", "position")
                                  if name not in e.features.feature)
    assert without == {name: blanked[name] for name in ("device", "page", "position")}  # one impression line each
    assert all(e.features.feature["user_id"].bytes_list.value for e in examples)  # ids stay required
    assert any("price" not in e.features.feature for e in examples)
    assert any("user_tenure_days" not in e.features.feature for e in examples)  # no signup_day, no tenure


def test_missing_input_files_name_the_pattern(tmp_path):
    with pytest.raises(FileNotFoundError, match="no users file matches"):
        _ingest(tmp_path, tmp_path / "out")


def test_no_example_sees_its_own_or_a_later_review(tmp_path, clean_log):
    """`item_reviews_before` counts the item's reviews written before the impression, recounted
    here from the raw events; the reviews artifact holds every review, and labels only reviewed rows."""
    clean, counts = clean_log
    summary = _ingest(clean, tmp_path)
    events = [json.loads(line) for line in open(clean / "events.jsonl")]
    item_of = {e["impression_id"]: e["item_id"] for e in events if e["event"] == "impression"}
    written = collections.defaultdict(list)
    for e in events:
        if e["event"] == "review":
            written[item_of[e["impression_id"]]].append(e["ts"])
    reviewed = {e["impression_id"]: e["stars"] for e in events if e["event"] == "review"}
    examples = _examples(tmp_path, "train") + _examples(tmp_path, "eval")
    seen, later = 0, 0
    for example in examples:
        impression, item, ts = (_value(example, k) for k in ("impression_id", "item_id", "ts"))
        before = _value(example, "item_reviews_before")
        assert before == sum(t < ts for t in written[item.decode()]), impression
        seen += before > 0
        later += any(t >= ts for t in written[item.decode()])  # reviews it must not see
        own = reviewed.get(impression.decode())
        if own is None:
            assert "review_positive" not in example.features.feature  # a missing label, not a 0
        else:
            assert _value(example, "review_positive") == int(own >= ev.REVIEW_POSITIVE_STARS)
    assert counts["review"] == summary["reviews"] == len(reviewed) > 50
    assert seen > 100 and later > 100
    rows = [json.loads(line) for f in glob.glob(str(tmp_path / "reviews" / "*")) for line in open(f)]
    assert sorted(r["impression_id"] for r in rows) == sorted(reviewed)
    assert all(r["item_id"] == item_of[r["impression_id"]] and r["text"] for r in rows)


def test_examples_are_serialized_one_feature_per_field_of_the_values_type_and_none_left_out():
    """tfx_bsl's encoder over rows grouped by their fields: what filling each tf.Example would give."""
    import numpy as np

    rows = [{"a": "x", "b": 1.5, "c": 3, "d": None, "lines": 4},
            {"a": None, "b": 2, "c": True, "d": np.float64(0.25)},
            {"a": "é", "b": 0.5, "c": 7, "d": None}]

    def example(**features):
        return tf.train.Example(features=tf.train.Features(feature={
            name: tf.train.Feature(**{kind: {"bytes_list": tf.train.BytesList, "float_list": tf.train.FloatList,
                                             "int64_list": tf.train.Int64List}[kind](value=[value])})
            for name, (kind, value) in features.items()}))

    want = [example(a=("bytes_list", b"x"), b=("float_list", 1.5), c=("int64_list", 3)),
            example(b=("int64_list", 2), c=("int64_list", 1), d=("float_list", 0.25)),
            example(a=("bytes_list", "é".encode()), b=("float_list", 0.5), c=("int64_list", 7))]
    got = [tf.train.Example.FromString(record) for record in leg.serialized_examples(rows)]
    key = lambda e: e.SerializeToString(deterministic=True)  # noqa: E731
    assert sorted(map(key, got)) == sorted(map(key, want))
