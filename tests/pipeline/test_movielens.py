"""MovieLens 100K end to end: the two-tower model with rating, like and retrieval heads, the TFRS
tutorial's split, single-task baselines as the release gate, and the retrieve signature."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from mtrec.cli import main as cli
from mtrec.config import dataset_preset
from tests.conftest import MOVIELENS_DIR

pytestmark = [pytest.mark.skipif(not os.path.exists(os.path.join(MOVIELENS_DIR, "u.data")),
                                 reason=f"MovieLens 100K is not at {MOVIELENS_DIR}"),
              pytest.mark.xdist_group("movielens")]  # one worker runs the shared pipeline run


@pytest.fixture(scope="module")
def summary(tmp_path_factory):
    work = tmp_path_factory.mktemp("movielens")
    config = work / "gate.yaml"
    # One Evaluator, the joint model against the baselines; no slices: each is a further pass of
    # TFMA's per-example metrics over both models (the small run measures slices).
    config.write_text("gate_against: single_task\nslices: []\n")
    assert cli(["run", "--work-dir", str(work), "--dataset", "movielens-100k", "--data-dir", MOVIELENS_DIR,
                "--protocol", "tfrs", "--baselines", "--config", str(config)]) == 0
    return json.loads((work / "run_summary.json").read_text())


def test_joint_model_reaches_the_goals_the_tutorial_did_not(summary):
    assert summary["examples"]["train"] + summary["examples"]["eval"] == 100_000
    assert 0.18 < summary["examples"]["eval"] / 100_000 < 0.22  # random 80/20
    assert summary["retrieval_top100"] >= 0.30 > summary["tfrs_tutorial"]["joint"]["top_100"]
    assert summary["rmse"] <= 0.93 < summary["tfrs_tutorial"]["joint"]["rmse"]
    assert summary["tasks"]["like"]["auc"] > 0.75


def test_joint_model_beats_rating_only_top100_and_retrieval_only_rmse(summary):
    rows = summary["tfrs_comparison"]
    assert rows["joint"]["top_100"] > rows["rating_only"]["top_100"]
    assert rows["joint"]["rmse"] < rows["retrieval_only"]["rmse"]
    stl = summary["stl"]
    assert set(stl) == {"rating", "like", "retrieval"}
    assert stl["retrieval"]["metric"] == "top_100" and stl["rating"]["metric"] == "root_mean_squared_error"
    for task, row in stl.items():
        assert row["negative_transfer"] == (row["delta"] < 0)
    # Gated against the baselines: blessed only if no task fell behind its own beyond tolerance.
    tolerance = {t["name"]: t["gate"]["tolerance"] for t in dataset_preset("movielens-100k")["tasks"] if "gate" in t}
    behind = {name for name, tol in tolerance.items() if stl[name]["delta"] < -tol}
    failed_change = {g.split("/")[0] for g in summary["failed_gates"] if "change against" in g}
    assert failed_change == behind, (summary["failed_gates"], stl)  # exactly the tasks behind their baseline
    assert summary["blessed"] == (not summary["failed_gates"])


def test_pushed_model_retrieves_top_100_items_and_ranks_candidates(summary):
    model = tf.saved_model.load(summary["pushed_model"])
    top = model.signatures["retrieve"](user_id=tf.constant([b"1", b"2"]), age_bucket=tf.constant([b"18-24", b"50-55"]),
                                       region=tf.constant([b"zip8", b"zip9"]),
                                       user_tenure_days=tf.constant([10, 200], tf.int64))
    assert top["item_ids"].shape == (2, 100) and top["scores"].shape == (2, 100)
    assert np.all(np.diff(top["scores"].numpy(), axis=1) <= 1e-6)  # best first
    assert len(set(top["item_ids"].numpy()[0])) == 100
    raw = model.signatures["serving_raw"]
    args = {name: spec for name, spec in raw.structured_input_signature[1].items()}
    batch = {name: tf.constant([b"1", b"1"]) if spec.dtype == tf.string else tf.zeros([2], spec.dtype)
             for name, spec in args.items()}
    batch["item_id"] = tf.constant([top["item_ids"].numpy()[0][0], top["item_ids"].numpy()[0][-1]])
    scores = raw(**batch)
    assert scores["rating"].shape == (2, 1) and np.all((scores["like"].numpy() > 0) & (scores["like"].numpy() < 1))
