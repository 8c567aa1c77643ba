import pytest
import tensorflow as tf

from mtrec.components.log_example_gen import serialized_examples
from mtrec.config import PipelineConfig
from mtrec.reporting.oracle import oracle_auc

ROWS = [  # impression_id, click, like, purchase, p_click, p_like; review_positive: REVIEWED
    ("a", 1, 1, 0, 0.9, 0.8), ("b", 0, 0, 0, 0.2, 0.9), ("c", 1, 0, 1, 0.6, 0.3),
    ("d", 0, 0, 0, 0.7, 0.1), ("e", 1, 1, 1, 0.4, 0.6), ("f", 0, 0, 0, 0.1, 0.5),
]
REVIEWED = {"c": 1, "e": 0, "f": 1}  # (label); the other impressions have no review: no label
P_POSITIVE = {"a": 0.0, "b": 1.0, "c": 0.7, "d": 0.0, "e": 0.5, "f": 0.2}


@pytest.fixture
def examples_uri(tmp_path):
    split = tmp_path / "examples" / "Split-eval"
    split.mkdir(parents=True)
    with tf.io.TFRecordWriter(str(split / "data.gz"), options="GZIP") as writer:
        for record in serialized_examples([
                {"impression_id": imp, "click": click, "like": like, "purchase": purchase, "dwell": 0.0,
                 "review_positive": REVIEWED.get(imp)} for imp, click, like, purchase, *_ in ROWS]):
            writer.write(record)
    return str(tmp_path / "examples")


def _oracle(path, rows):
    with open(path, "w") as f:
        f.write("impression_id,click,like,purchase,dwell,review_positive\n")
        f.writelines(f"{r[0]},{r[4]},{r[5]},0.5,1.0,{P_POSITIVE[r[0][-1]]}\n" for r in rows)
    return str(path)


def test_oracle_auc_on_the_task_population(examples_uri, tmp_path):
    result = oracle_auc(examples_uri, _oracle(tmp_path / "oracle.csv", ROWS[::-1]), PipelineConfig())
    # click: positives a(0.9) c(0.6) e(0.4) vs negatives b(0.2) d(0.7) f(0.1): 7 of 9 pairs ordered.
    assert result["click"] == pytest.approx(7 / 9)
    # like is measured on clicked impressions only: positives a(0.8) e(0.6) vs negative c(0.3).
    assert result["like"] == pytest.approx(1.0)
    assert result["purchase"] == pytest.approx(0.5)  # constant oracle: no ranking
    # review_positive only where a review was written: positives c(0.7) f(0.2) vs negative e(0.5);
    # counted with the unreviewed rows as negatives, it would be 5/8
    assert result["review_positive"] == pytest.approx(0.5)


def test_an_oracle_of_other_impressions_reports_nothing(examples_uri, tmp_path):
    foreign = [("z" + r[0],) + r[1:] for r in ROWS]
    assert oracle_auc(examples_uri, _oracle(tmp_path / "oracle.csv", foreign), PipelineConfig()) == {}
