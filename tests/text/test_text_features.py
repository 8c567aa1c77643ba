"""The TextEmbedder's Beam job (distinct texts once, a cache across runs, bad rows counted) and the
text-vector layer the models look vectors up with."""
import glob
import json
import os

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
from apache_beam.options.pipeline_options import PipelineOptions
from tensorflow.core.protobuf import saved_model_pb2

from mtrec.components.text_embedder import SEPARATOR, embed_tables, read_embeddings, read_reviews, text_of
from mtrec.models.layers import FusedEmbedding, ReviewTable, ReviewVectors, TextVectors, UnknownIdsFromText
from mtrec.text.minilm import SentenceEncoder
from tests.conftest import SMALL_RUN

FIELDS = {"items": ["title", "description"]}


def direct_pipeline():
    return beam.Pipeline(options=PipelineOptions(["--direct_running_mode=in_memory"]))


def write_items(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))


@pytest.fixture(scope="module")
def encoder():
    return SentenceEncoder()


def test_a_row_text_is_its_present_string_fields_and_a_non_string_is_no_text():
    assert text_of({"title": "Red tea", "description": "Strong."}, ["title", "description"]) == (
        "Red tea" + SEPARATOR + "Strong.", "text")
    assert text_of({"title": "Red tea", "description": "  "}, ["title", "description"]) == ("Red tea", "text")
    assert text_of({"title": None}, ["title", "description"]) == (None, "missing")
    assert text_of({"title": 42, "description": "x"}, ["title", "description"]) == (None, "not_text")


def test_reviews_are_encoded_in_item_and_time_order_with_their_means_after_k_reviews(tmp_path, encoder):
    """What LogExampleGen's reviews artifact becomes: each review's vector by item and time, and
    the model's table of an item's mean review vector after its first k reviews."""
    (tmp_path / "reviews").mkdir()
    rows = [{"impression_id": "r3", "item_id": "a", "ts": 30, "text": "Awful."},
            {"impression_id": "r1", "item_id": "a", "ts": 10, "text": None},  # a review without text
            {"impression_id": "r2", "item_id": "a", "ts": 20, "text": "Loved it!"},
            {"impression_id": "r4", "item_id": "b", "ts": 5, "text": "Loved it!"}]
    write_items(tmp_path / "reviews" / "reviews-00000-of-00001.jsonl", rows)
    meta = embed_tables(direct_pipeline, str(tmp_path), "jsonl", {"reviews": ["text"]}, str(tmp_path / "out"),
                        reviews_uri=str(tmp_path / "reviews"))
    assert meta["texts_encoded"] == 2 and meta["tables"]["reviews"]["with_text"] == 3
    reviews = read_reviews(str(tmp_path / "out"))
    assert reviews["ids"].tolist() == ["r1", "r2", "r3", "r4"] and reviews["has_text"].tolist() == [False, True, True, True]
    loved, awful = encoder.encode(["Loved it!", "Awful."])
    table = ReviewTable.from_reviews(reviews["items"], reviews["has_text"], reviews["vectors"])
    assert table.items == ["a", "b"] and table.counts == [3, 1] and table.valid.tolist() == [0, 1, 1, 1]
    np.testing.assert_allclose(table.vectors[1:], [loved, (loved + awful) / 2, loved], atol=1e-5)

    layer = ReviewVectors(table.items, table.counts, table.vectors.shape[1], table)
    default = np.full(table.vectors.shape[1], 7.0, np.float32)
    layer.default.assign(default)
    keys = tf.constant([["a"], ["a"], ["a"], ["a"], ["a"], ["a"], ["b"], ["new"]])
    seen = tf.constant([[0], [1], [2], [3], [9], [-1], [-1], [-1]], tf.int64)  # -1: missing, every review known
    out = layer([keys, seen]).numpy()
    expected = [default, default, loved, (loved + awful) / 2, (loved + awful) / 2, (loved + awful) / 2, loved, default]
    np.testing.assert_allclose(out, np.stack(expected), atol=1e-5)


def test_each_distinct_text_is_encoded_once_and_a_rerun_encodes_only_what_changed(tmp_path, encoder):
    base, cache = tmp_path / "logs", tmp_path / "cache"
    base.mkdir()
    rows = [{"item_id": "a", "title": "Green tea", "description": "Organic, 100 bags."},
            {"item_id": "b", "title": "Green tea", "description": "Organic, 100 bags."},  # same text as a
            {"item_id": "c", "title": "Toy Story (1995)"},
            {"item_id": "d"},  # no text: the model's default stands in
            {"item_id": "e", "title": 7},  # not a string
            "not json", {"title": "no id"}]
    write_items(base / "items.jsonl", rows)
    first = embed_tables(direct_pipeline, str(base), "jsonl", FIELDS, str(tmp_path / "run1"), cache_dir=str(cache))
    assert (first["texts"], first["texts_encoded"], first["texts_from_cache"]) == (2, 2, 0)
    assert first["tables"]["items"] == {"fields": FIELDS["items"], "with_text": 3, "missing": 1, "not_text": 1,
                                        "unreadable": 1, "no_id": 1}
    ids, vectors = read_embeddings(str(tmp_path / "run1"))["items"]
    assert ids == ["a", "b", "c"]
    expected = encoder.encode(["Green tea" + SEPARATOR + "Organic, 100 bags.", "Toy Story (1995)"])
    np.testing.assert_allclose(vectors, expected[[0, 0, 1]], atol=1e-5)

    rows[2] = {"item_id": "c", "title": "Toy Story 2 (1999)"}  # changed
    rows.append({"item_id": "f", "title": "Black tea"})  # added
    write_items(base / "items.jsonl", rows)
    second = embed_tables(direct_pipeline, str(base), "jsonl", FIELDS, str(tmp_path / "run2"), cache_dir=str(cache))
    assert (second["texts"], second["texts_encoded"], second["texts_from_cache"]) == (3, 2, 1)
    ids, vectors = read_embeddings(str(tmp_path / "run2"))["items"]
    assert ids == ["a", "b", "c", "f"]
    np.testing.assert_allclose(vectors[[2, 3]], encoder.encode(["Toy Story 2 (1999)", "Black tea"]), atol=1e-5)


def test_an_unknown_table_is_refused_by_name(tmp_path):
    (tmp_path / "shops.jsonl").write_text("{}\n")
    with pytest.raises(ValueError, match="'shops'"):
        embed_tables(direct_pipeline, str(tmp_path), "jsonl", {"shops": ["name"]}, str(tmp_path / "out"))


def test_ids_without_a_vector_get_the_learned_default():
    vectors = np.eye(3, 4, dtype=np.float32)
    layer = TextVectors(["a", "b", "c"], 4, vectors)
    layer.default.assign([9.0, 9.0, 9.0, 9.0])
    out = layer(tf.constant([["b"], ["zzz"], ["a"], ["__missing__"]])).numpy()
    np.testing.assert_array_equal(out, [vectors[1], [9] * 4, vectors[0], [9] * 4])
    assert [w.name.split("/")[-1] for w in layer.trainable_weights] == ["default:0"]  # the vectors stay frozen


def test_an_id_past_the_vocabulary_is_embedded_from_its_text_and_the_others_keep_their_rows():
    # item_id: 3 vocabulary ids, then 2 OOV rows; its rows come after device's (sorted names).
    fused = FusedEmbedding({"device": 2, "item_id": 5}, dimension=4)
    ids = {"device": tf.constant([[1], [0], [1], [0]], tf.int64),
           "item_id": tf.constant([[0], [3], [2], [4]], tf.int64)}
    vectors = tf.constant(np.random.default_rng(0).normal(size=(4, 6)), tf.float32)
    layer = UnknownIdsFromText(known=3, position=1, dimension=4)
    embedded = fused(ids)
    out = layer([embedded, ids["item_id"], vectors]).numpy()
    mapped = layer.map(vectors).numpy()
    np.testing.assert_array_equal(out[:, :4], embedded[:, :4])  # device: untouched
    np.testing.assert_array_equal(out[[0, 2], 4:], embedded.numpy()[[0, 2], 4:])  # known items: their rows
    np.testing.assert_allclose(out[[1, 3], 4:], mapped[[1, 3]])  # OOV items: their text, mapped
    assert not np.allclose(out[[1, 3], 4:], embedded.numpy()[[1, 3], 4:])
    assert UnknownIdsFromText.from_config(layer.get_config()).get_config() == layer.get_config()


@SMALL_RUN
def test_the_pushed_model_looks_text_vectors_up_by_id_with_core_ops_only(small_run):
    """Stock TF Serving runs the model: every op in every graph and function is a core TensorFlow
    op (no tensorflow-text, no custom kernels), and the vectors are the TextEmbedder's."""
    path = small_run.summary["pushed_model"]
    saved = saved_model_pb2.SavedModel()
    with open(os.path.join(path, "saved_model.pb"), "rb") as f:
        saved.ParseFromString(f.read())
    ops = {node.op for graph in saved.meta_graphs
           for node in [*graph.graph_def.node, *(n for f in graph.graph_def.library.function for n in f.node_def)]}
    assert not sorted(op for op in ops if not hasattr(tf.raw_ops, op))
    assert "LookupTableFindV2" in ops  # the id -> row lookup
    text = small_run.summary["text"]
    assert text["dimension"] == 384 and text["tables"]["items"]["with_text"] > 0
    assert text["tables"]["users"]["with_text"] > 0
    checkpoint = os.path.join(path, "variables", "variables")
    tables = [tf.train.load_checkpoint(checkpoint).get_tensor(name)
              for name, _ in tf.train.list_variables(checkpoint) if "/table/" in name]
    embeddings, written = read_embeddings(text["uri"]), read_reviews(text["uri"])
    assert len(tables) == len(embeddings) + 1 == 3  # items, users and the items' reviews
    maps = [shape for name, shape in tf.train.list_variables(checkpoint) if "/map/kernel/" in name]
    assert maps == [[384, 16]]  # new items' text into the id embeddings (`text.unknown_ids_from_text`)
    for _, vectors in embeddings.values():  # row 0 stands for an id not in the catalogue
        assert any(t.shape == (len(vectors) + 1, 384) and np.array_equal(t[1:], vectors) for t in tables)
    reviews = ReviewTable.from_reviews(written["items"], written["has_text"], written["vectors"])
    assert text["tables"]["reviews"]["with_text"] == len(written["ids"]) > 0
    assert any(t.shape == (len(written["ids"]) + 1, 384) and np.allclose(t[1:], reviews.vectors) for t in tables)


@SMALL_RUN
def test_the_text_ablation_is_the_same_model_without_text_reported_beside_it(small_run):
    summary = small_run.summary
    ablation, cold = summary["text_ablation"], summary["cold_start"]
    assert set(ablation) == set(cold) == {"click", "like", "purchase", "dwell", "review_positive"}
    for task, row in ablation.items():
        metric = row["metric"]
        assert metric == ("root_mean_squared_error" if task == "dwell" else "auc")
        assert row["all"]["with_text"] == summary["tasks"][task][metric]  # the release Evaluator's candidate
        assert row["cold"]["with_text"] == cold[task][metric]
        assert np.isfinite(row["all"]["without_text"]) and row["cold"]["without_text"] is not None
    assert ablation["click"]["all"]["with_text"] != ablation["click"]["all"]["without_text"]
    (model,) = glob.glob(os.path.join(small_run.work_dir, "pipeline", "no_text_trainer", "model", "*", "Format-Serving"))
    widths = {shape[-1] for _, shape in tf.train.list_variables(os.path.join(model, "variables", "variables")) if shape}
    assert 384 not in widths  # no text vectors in the ablated model


def test_reduced_vectors_keep_dot_products_and_cosines_as_far_as_their_dimensions_can():
    from mtrec.pipeline.training import principal_directions

    rng = np.random.default_rng(0)
    low_rank = rng.normal(size=(500, 8)) @ rng.normal(size=(8, 384))  # 8 directions carry everything
    basis = principal_directions(low_rank, 8)
    assert basis.shape == (384, 8)
    np.testing.assert_allclose(basis.T @ basis, np.eye(8), atol=1e-5)
    reduced = low_rank @ basis
    np.testing.assert_allclose(reduced @ reduced.T, low_rank @ low_rank.T, rtol=1e-3, atol=1e-2)
    noisy = low_rank + rng.normal(scale=0.01, size=low_rank.shape)
    top, rest = noisy @ principal_directions(noisy, 8), noisy @ principal_directions(noisy, 16)[:, 8:]
    assert np.linalg.norm(top) > 50 * np.linalg.norm(rest)  # the largest directions come first
    with pytest.raises(ValueError, match="text.reduce_dim=400 is more than the encoder's 384"):
        principal_directions(low_rank, 400)
