"""Warm start's row remapping: an id both vocabularies hold keeps its row, a new id its fresh row,
a dropped id goes, the OOV buckets keep theirs. And the files a warm start trains on: the newest
spans' (numbers, not names: span 10 is newer than span 9)."""
import numpy as np

from mtrec.components.trainer import TRAIN_FILES_BY_SPAN
from mtrec.pipeline.training import newest_train_files
from mtrec.pipeline.warm_start import remap_rows


def test_a_warm_start_trains_on_the_newest_spans_files():
    config = {TRAIN_FILES_BY_SPAN: {"9": ["t/9/*"], "10": ["t/10/a*", "t/10/b*"], "8": ["t/8/*"]}}
    assert newest_train_files(config, 1) == ["t/10/a*", "t/10/b*"]
    assert newest_train_files(config, 2) == ["t/9/*", "t/10/a*", "t/10/b*"]
    assert newest_train_files(config, 3) == newest_train_files(config, 0) == []  # the whole window
    assert newest_train_files({}, 1) == []  # not a daily run


def test_rows_follow_their_ids_through_both_vocabularies():
    old_vocab, new_vocab, oov = ["a", "b", "c"], ["c", "d", "a", "e"], 2
    old = np.arange((len(old_vocab) + oov) * 2, dtype=np.float32).reshape(-1, 2)  # row i = [2i, 2i+1]
    fresh = -np.ones((len(new_vocab) + oov, 2), np.float32)
    counts = remap_rows(old, old_vocab, fresh, new_vocab)
    assert counts == {"known": 2, "new": 2, "dropped": 1}
    np.testing.assert_array_equal(fresh[0], old[2])  # c
    np.testing.assert_array_equal(fresh[2], old[0])  # a
    np.testing.assert_array_equal(fresh[[1, 3]], -np.ones((2, 2)))  # d, e: fresh
    np.testing.assert_array_equal(fresh[4:], old[3:])  # OOV buckets
