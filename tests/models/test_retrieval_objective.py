"""The retrieval objective is TFRS's Retrieval task's loss, computed without its dense labels."""
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_recommenders as tfrs
import tf_keras as keras

from mtrec.config import RETRIEVAL, TaskConfig
from mtrec.models.multitask import RetrievalObjective
from mtrec.models.two_tower import ITEM_EMBEDDING, QUERY_EMBEDDING


@pytest.mark.parametrize("given", [None, "click"])
def test_loss_is_tfrs_retrieval_with_sampling_correction_and_accidental_hits_removed(given):
    rng = np.random.default_rng(0)
    batch, items = 64, 20  # few items: many accidental hits in the batch
    queries, candidates = (tf.constant(rng.normal(size=(batch, 8)), tf.float32) for _ in range(2))
    item_ids = rng.integers(0, items, size=(batch, 1))
    probability = rng.dirichlet(np.ones(items))
    click = rng.integers(0, 2, size=(batch, 1)).astype(np.float32)
    task = TaskConfig("retrieval", RETRIEVAL, given=given)
    ours = RetrievalObjective(task, probability)(
        {"item_id": tf.constant(item_ids)}, {"retrieval": tf.ones([batch, 1]), "click": tf.constant(click)},
        {QUERY_EMBEDDING: queries, ITEM_EMBEDDING: candidates})

    reference = tfrs.tasks.Retrieval(loss=keras.losses.CategoricalCrossentropy(
        from_logits=True, reduction=keras.losses.Reduction.NONE), remove_accidental_hits=True)
    per_example = reference(queries, candidates, sample_weight=click[:, 0] if given else None,
                            candidate_sampling_probability=tf.constant(probability[item_ids[:, 0]], tf.float32),
                            candidate_ids=tf.constant(item_ids[:, 0]), compute_metrics=False)
    assert len(set(item_ids[:, 0])) < batch  # the batch has accidental hits to remove
    np.testing.assert_allclose(float(ours), float(tf.reduce_mean(per_example)), rtol=1e-5)
