"""The data check against the config, on statistics TFDV computes from small in-memory tables."""
import numpy as np
import pandas as pd
import tensorflow_data_validation as tfdv

from mtrec.components import data_check
from mtrec.config import PipelineConfig

CONFIG = PipelineConfig.from_dict({
    "features": {"ids": ["user"], "categorical": ["device", "score"], "numeric": ["price", "age"]},
    "tasks": [{"name": "click"}, {"name": "stars", "type": "regression"}], "slices": []})


def _problems(frame, config=CONFIG):
    statistics = tfdv.generate_statistics_from_dataframe(frame)
    return data_check.problems(config, tfdv.infer_schema(statistics), statistics, "table t.csv")


def test_a_table_that_fits_the_config_has_no_problems():
    frame = pd.DataFrame({"user": ["a", "b"] * 50, "device": ["m", "d"] * 50, "score": [1, 2] * 50,
                          "price": [1.5, np.nan] * 50, "age": [30.0, 40.0] * 50, "click": [0, 1] * 50,
                          "stars": [3.0, 5.0] * 50})
    assert _problems(frame) == []


def test_each_problem_names_the_table_the_column_and_what_to_do():
    frame = pd.DataFrame({"user": ["a", "b"] * 50, "score": [0.5, 1.5] * 50, "price": ["cheap", "dear"] * 50,
                          "age": [np.nan] * 100, "click": [0, 3] * 50, "stars": [3.0, 5.0] * 50})
    found = _problems(frame)
    assert any(p.startswith("table t.csv: column 'device' (features.categorical) is not in the data") for p in found)
    assert any("'score' (features.categorical) holds floats" in p and "features.numeric" in p for p in found)
    assert any("'price' is configured numeric but holds strings" in p for p in found)
    assert any("'age' (features.numeric) is missing in every example" in p for p in found)
    assert any("label 'click' of binary task 'click' ranges over [0, 3]" in p for p in found)
    assert len(found) == 5, found


def test_a_string_label_needs_its_positive_value():
    frame = pd.DataFrame({"user": ["a", "b"] * 50, "sex": ["male", "female"] * 50})
    config = {"features": {"ids": ["user"], "categorical": [], "numeric": []}, "slices": [],
              "tasks": [{"name": "male", "label": "sex"}]}
    assert any("holds strings; it must be 0/1, or name the value that means 1 with `positive`" in p
               for p in _problems(frame, PipelineConfig.from_dict(config)))
    config["tasks"][0]["positive"] = "male"
    assert _problems(frame, PipelineConfig.from_dict(config)) == []


def test_missing_counts_include_empty_value_lists_and_nan(tmp_path):
    """CsvExampleGen writes an empty cell as a feature with no values; TFDV counts it present."""
    import tensorflow as tf

    path = str(tmp_path / "examples.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        for i in range(10):
            feature = {"device": tf.train.Feature(bytes_list=tf.train.BytesList(value=[] if i < 3 else [b"m"])),
                       "price": tf.train.Feature(float_list=tf.train.FloatList(value=[float("nan") if i == 9 else 1.0]))}
            if i != 5:
                feature["region"] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"north"]))
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    statistics = tfdv.generate_statistics_from_tfrecord(path, stats_options=tfdv.StatsOptions(),
                                                        pipeline_options=None)
    assert data_check.missing_counts(statistics) == {"device": 3, "price": 1, "region": 1}
