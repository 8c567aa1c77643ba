"""preprocessing_fn on in-memory rows with missing values (real TFT on Beam's DirectRunner), and
the exported signatures of a tiny untrained network over that Transform graph: no pipeline run."""
import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io, schema_utils

from mtrec.config import PipelineConfig
from mtrec.models.multitask import build_multitask_model
from mtrec.pipeline.datasets import dataset, record_accessor, with_unknown_ids
from mtrec.pipeline.export import export_serving_model
from mtrec.pipeline.preprocessing import preprocessing_fn
from mtrec.pipeline.training import vocab_sizes
from mtrec.serving.signatures import MISSING_FLOAT, MISSING_INT, MISSING_STRING
from mtrec.transformed import MISSING

CONFIG = PipelineConfig.from_dict({
    "features": {"ids": ["user_id"], "categorical": ["device", "hour"], "hashed": {"item_id": 16},
                 "numeric": ["price"], "oov_buckets": 2},
    "tasks": [{"name": "click"}, {"name": "like", "given": "click"}, {"name": "male", "label": "sex", "positive": "male"}],
    "slices": [], "model": {"architecture": "shared_bottom", "bottom_units": [8], "tower_units": [4]}})
SPEC = {"user_id": tf.io.FixedLenFeature([], tf.string), "device": tf.io.VarLenFeature(tf.string),
        "hour": tf.io.VarLenFeature(tf.int64), "item_id": tf.io.VarLenFeature(tf.string),
        "price": tf.io.VarLenFeature(tf.float32), "click": tf.io.FixedLenFeature([], tf.float32),
        "like": tf.io.VarLenFeature(tf.float32), "sex": tf.io.VarLenFeature(tf.string)}
NAN = float("nan")
# Row 1 lacks device, item and price (absent) and its like label; row 2 lacks hour and sex;
# row 3's price is NaN. Present prices: 10 and 30 (mean 20, std 10).
ROWS = [
    dict(user_id="u1", device=["mobile"], hour=[3], item_id=["i1"], price=[10.0], click=1.0, like=[1.0], sex=["male"]),
    dict(user_id="u2", device=[], hour=[5], item_id=[], price=[], click=0.0, like=[], sex=["female"]),
    dict(user_id="u1", device=["desktop"], hour=[], item_id=["i2"], price=[30.0], click=1.0, like=[0.0], sex=[]),
    dict(user_id="u3", device=["mobile"], hour=[3], item_id=["i1"], price=[NAN], click=1.0, like=[1.0], sex=["male"]),
]


pytestmark = pytest.mark.xdist_group("transform_and_export")  # one worker: the module's Transform runs once


@pytest.fixture(scope="module")
def transformed(tmp_path_factory):
    """(the rows through the written Transform graph, its TFTransformOutput)."""
    output = _analyse(ROWS, tmp_path_factory.mktemp("tft"))
    return _transform(output, ROWS), output


def _analyse(rows, root) -> tft.TFTransformOutput:
    """preprocessing_fn's Transform graph, analysed over `rows` in that order."""
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(SPEC))
    custom = {"config": CONFIG.transform_json()}
    with beam.Pipeline(argv=["--direct_running_mode=in_memory"]) as pipeline, \
            tft_beam.Context(temp_dir=str(root / "tmp"), force_tf_compat_v1=False):
        raw = pipeline | beam.Create(rows, reshuffle=False)
        transform_fn = (raw, metadata) | tft_beam.AnalyzeDataset(lambda inputs: preprocessing_fn(inputs, custom))
        _ = transform_fn | tft_beam.WriteTransformFn(str(root / "transform"))
    metadata_io.write_metadata(metadata, str(root / "transform" / tft.TFTransformOutput.RAW_METADATA_DIR))
    return tft.TFTransformOutput(str(root / "transform"))


def _transform(output: tft.TFTransformOutput, rows):
    parsed = tf.io.parse_example(tf.constant([_example(r) for r in rows]), output.raw_feature_spec())
    return output.transform_features_layer()(parsed)


def _column(rows, name):
    return rows[name].numpy().reshape(-1)


def test_a_missing_categorical_is_its_own_vocabulary_entry_not_oov(transformed):
    rows, output = transformed
    for name, missing_row in (("device", 1), ("hour", 2)):
        vocabulary = output.vocabulary_by_name(name)
        ids = _column(rows, name)
        assert MISSING.encode() in vocabulary
        assert ids[missing_row] == vocabulary.index(MISSING.encode()) < len(vocabulary)  # in vocabulary: not OOV
    assert {b"3", b"5"} <= set(output.vocabulary_by_name("hour"))  # int codes as text
    assert _column(rows, "device")[0] == _column(rows, "device")[3] != _column(rows, "device")[2]


def test_a_missing_hashed_value_takes_bucket_zero(transformed):
    ids = _column(transformed[0], "item_id")
    assert ids[1] == 0 and all(1 <= i < 16 for i in ids[[0, 2, 3]]) and ids[0] == ids[3]


def test_a_missing_numeric_is_mean_imputed_with_an_indicator(transformed):
    rows, _ = transformed
    np.testing.assert_allclose(_column(rows, "price"), [-1.0, 0.0, 1.0, 0.0], atol=1e-5)  # (x - 20) / 10, NaN -> mean
    np.testing.assert_array_equal(_column(rows, "price_missing"), [0, 1, 0, 1])


def test_a_numeric_is_scaled_by_the_same_statistics_whatever_order_its_values_come_in(tmp_path):
    """In float32, 1e8 + 1 is 1e8: summed in float32 these prices averaged 0.25 in one order and
    0.5 in the other (and Beam sums its bundles in any order); in float64 both are exact."""
    rows = [dict(ROWS[0], price=[price]) for price in (1e8, 1.0, -1e8, 1.0)]
    scaled = [_transform(_analyse(order, tmp_path / name), ROWS[:1])["price"].numpy().item()
              for name, order in (("as_is", rows), ("ones_first", rows[1::2] + rows[::2]))]
    std = np.sqrt(np.mean(np.square([1e8, 1.0, -1e8, 1.0])) - 0.5 ** 2)
    assert scaled[0] == scaled[1] == pytest.approx((10.0 - 0.5) / std, rel=1e-6)  # ROWS[0]'s price: 10


def test_labels_carry_their_presence_and_a_positive_value_maps_to_one(transformed):
    rows, _ = transformed
    np.testing.assert_array_equal(_column(rows, "like"), [1, 0, 0, 1])
    np.testing.assert_array_equal(_column(rows, "like__present"), [1, 0, 1, 1])
    np.testing.assert_array_equal(_column(rows, "sex"), [1, 0, 0, 1])
    np.testing.assert_array_equal(_column(rows, "sex__present"), [1, 1, 0, 1])


def test_id_dropout_reads_that_share_of_vocabulary_ids_as_unknown_ones_and_leaves_hashed_ids(transformed):
    rows, output = transformed
    known = output.vocabulary_size_by_name("user_id")
    batch = {name: tf.tile(rows[name], [1000, 1]) for name in ("user_id", "item_id", "device")}  # 4,000 rows
    config = PipelineConfig.from_dict({**CONFIG.to_dict(), "training": {"id_dropout": 0.25}})
    two_batches = lambda: [{name: value.numpy().reshape(-1) for name, value in b.items()}  # noqa: E731
                           for b in with_unknown_ids(tf.data.Dataset.from_tensors(batch).repeat(2), config, output)]
    dropped, second = two_batches()
    before = batch["user_id"].numpy().reshape(-1)
    assert before.max() < known  # every id of the rows is in the vocabulary
    unknown = dropped["user_id"] >= known
    assert 0.22 < unknown.mean() < 0.28  # 0.25 +- 4 sd of 4,000 draws
    assert set(dropped["user_id"][unknown]) == {known, known + 1}  # either OOV bucket (oov_buckets: 2)
    np.testing.assert_array_equal(dropped["user_id"][~unknown], before[~unknown])
    for name in ("item_id", "device"):  # a hashed id has no unknown row; a categorical is not an id
        np.testing.assert_array_equal(dropped[name], batch[name].numpy().reshape(-1))
    assert not np.array_equal(dropped["user_id"], second["user_id"])  # each batch draws its own
    # from training.seed: the same on a rerun
    np.testing.assert_array_equal(two_batches()[0]["user_id"], dropped["user_id"])


@pytest.mark.parametrize("cache", ["memory", "none"])
def test_raw_examples_through_the_graph_read_as_the_transformed_rows(transformed, tmp_path, cache):
    """The Trainer's road when Transform only analyses (`transform_in_trainer`): the raw examples,
    parsed by the raw schema and transformed by the graph, in memory once or every streamed batch."""
    rows, output = transformed
    path = str(tmp_path / "raw.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        for row in ROWS:
            writer.write(_example(row))
    config = PipelineConfig.from_dict({**CONFIG.to_dict(), "training": {"batch_size": 4, "cache": cache}})
    [(features, labels)] = list(dataset(path, record_accessor("mtrec-test"), output, config, shuffle=False, raw=True))
    read = {**features, **labels}
    assert sorted(read) == sorted(rows) == sorted(output.transformed_feature_spec())
    for name in rows:
        np.testing.assert_array_equal(tf.reshape(read[name], [-1]), _column(rows, name), err_msg=name)


def _transformed_files(output, directory, count: int, order=None) -> str:
    """`count` transformed examples as TFRecords (in `order`, default 0 to count - 1); example i
    has every float feature i and every integer feature i % 2 (an id of every vocabulary)."""
    path = str(directory / "transformed.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        for i in range(count) if order is None else order:
            feature = {}
            for name, spec in output.transformed_feature_spec().items():
                if spec.dtype == tf.float32:
                    feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=[float(i)]))
                else:
                    feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[i % 2]))
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    return path


@pytest.mark.parametrize("cache", ["memory", "none"])
def test_every_epoch_reads_each_example_once_in_a_fresh_order_from_memory_or_the_files(transformed, tmp_path, cache):
    _, output = transformed
    files = _transformed_files(output, tmp_path, 37)
    config = PipelineConfig.from_dict({**CONFIG.to_dict(), "training": {"batch_size": 8, "cache": cache,
                                                                         "id_dropout": 0.0}})

    def epochs(shuffle):
        data = dataset(files, record_accessor("mtrec-test"), output, config, shuffle=shuffle, epochs=1)
        assert int(data.cardinality()) == 5  # 37 examples in batches of 8: Keras knows an epoch's length
        return [np.concatenate([features["price"].numpy().reshape(-1) for features, _ in data]) for _ in range(2)]

    first, second = epochs(shuffle=True)
    for order in (first, second):
        assert sorted(order.tolist()) == [float(i) for i in range(37)]  # every example once
    assert first.tolist() != list(range(37)) and first.tolist() != second.tolist()  # reshuffled each epoch
    np.testing.assert_array_equal(epochs(shuffle=True)[0], first)  # from training.seed: the same on a rerun
    for order in epochs(shuffle=False):  # evaluation reads the file's order
        np.testing.assert_array_equal(order, np.arange(37, dtype=np.float32))


def test_batches_from_memory_are_drawn_alike_whatever_order_the_files_hold_the_examples_in(transformed, tmp_path):
    """Beam writes a split's examples in another order each run: training on the same examples
    with the same seed must still see the same batches (and train the same model)."""
    _, output = transformed
    config = PipelineConfig.from_dict({**CONFIG.to_dict(), "training": {"batch_size": 8, "cache": "memory"}})
    epochs = []
    for name, order in (("ascending", None), ("descending", range(36, -1, -1))):
        (tmp_path / name).mkdir()
        files = _transformed_files(output, tmp_path / name, 37, order)
        data = dataset(files, record_accessor("mtrec-test"), output, config, shuffle=True, epochs=2)
        epochs.append([(f["price"].numpy(), f["user_id"].numpy()) for f, _ in data])
    assert len(epochs[0]) == 10  # two passes of 5 batches, each batch's prices and ids (some dropped)
    for (price, user), (price_again, user_again) in zip(*epochs):
        np.testing.assert_array_equal(price, price_again)
        np.testing.assert_array_equal(user, user_again)


def test_batches_from_memory_read_a_fresh_share_of_ids_as_unknown_every_epoch(transformed, tmp_path):
    _, output = transformed
    known = output.vocabulary_size_by_name("user_id")
    files = _transformed_files(output, tmp_path, 400)
    config = PipelineConfig.from_dict({**CONFIG.to_dict(), "training": {"batch_size": 64, "cache": "memory",
                                                                         "id_dropout": 0.25}})
    data = dataset(files, record_accessor("mtrec-test"), output, config, shuffle=True, epochs=1)
    epochs = []
    for _ in range(2):
        batches = [(f["price"].numpy().reshape(-1), f["user_id"].numpy().reshape(-1), f["device"].numpy().reshape(-1),
                    f["item_id"].numpy().reshape(-1)) for f, _ in data]
        example, user, device, item = (np.concatenate(column) for column in zip(*batches))
        order = np.argsort(example)
        epochs.append(user[order] >= known)
        assert 0.17 < epochs[-1].mean() < 0.33  # 0.25 +- 3.7 sd of 400 draws
        np.testing.assert_array_equal(user[order][~epochs[-1]], np.arange(400)[~epochs[-1]] % 2)  # the rest kept
        np.testing.assert_array_equal(device[order], np.arange(400) % 2)  # a categorical is not an id
        np.testing.assert_array_equal(item[order], np.arange(400) % 2)  # a hashed id has no unknown row
    assert (epochs[0] != epochs[1]).any()  # each epoch draws anew


def _example(row):
    feature = {}
    for name, value in row.items():
        values = value if isinstance(value, list) else [value]
        if values and isinstance(values[0], str):
            feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[v.encode() for v in values]))
        elif values and isinstance(values[0], float):
            feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=values))
        elif values:
            feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=values))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


@pytest.fixture(scope="module")
def exported(transformed, tmp_path_factory):
    _, output = transformed
    tf.keras.utils.set_random_seed(0)
    network = build_multitask_model(CONFIG, vocab_sizes(CONFIG, output)).network
    path = str(tmp_path_factory.mktemp("export") / "model")
    export_serving_model(network, output, CONFIG, path)
    return tf.saved_model.load(path)


def test_rows_with_missing_values_score_finite_and_alike_in_every_signature(exported):
    from_examples = exported.signatures["serving_default"](examples=tf.constant([_example(r) for r in ROWS]))
    sentinel = {tf.string: MISSING_STRING, tf.int64: MISSING_INT, tf.float32: MISSING_FLOAT}
    raw_spec = exported.signatures["serving_raw"].structured_input_signature[1]
    raw = {name: tf.constant([(r[name] if isinstance(r[name], list) else [r[name]] or [])[0]
                              if (r[name] if isinstance(r[name], list) else [r[name]]) else sentinel[spec.dtype]
                              for r in ROWS], spec.dtype) for name, spec in raw_spec.items()}
    from_raw = exported.signatures["serving_raw"](**raw)
    ranked = exported.signatures["rank"](**raw, weight_click=tf.constant(1.0), weight_like=tf.constant(0.0),
                                         weight_male=tf.constant(0.0))
    assert sorted(from_examples) == sorted(from_raw) == ["click", "like", "male"]
    for task in from_examples:
        scores = from_examples[task].numpy()
        assert scores.shape == (4, 1) and np.all(np.isfinite(scores)) and np.all((scores > 0) & (scores < 1))
        np.testing.assert_allclose(scores, from_raw[task].numpy(), rtol=1e-6)
        np.testing.assert_allclose(scores, ranked[task].numpy(), rtol=1e-6)
    np.testing.assert_allclose(ranked["score"].numpy(), from_raw["click"].numpy().reshape(-1), rtol=1e-6)
    # a missing value is not the same input as a present one: row 1 differs from a copy with row 0's device
    copy = dict(ROWS[1], device=["mobile"])
    other = exported.signatures["serving_default"](examples=tf.constant([_example(copy)]))
    assert not np.allclose(other["click"].numpy()[0], from_examples["click"].numpy()[1])


def test_transform_features_gives_tfma_labels_and_zero_weight_where_a_label_is_missing(exported):
    out = exported.signatures["transform_features"](examples=tf.constant([_example(r) for r in ROWS]))
    np.testing.assert_array_equal(out["click__weight"].numpy().reshape(-1), [1, 1, 1, 1])
    np.testing.assert_array_equal(out["like__weight"].numpy().reshape(-1), [1, 0, 1, 1])  # given click, and present
    np.testing.assert_array_equal(out["male__weight"].numpy().reshape(-1), [1, 1, 0, 1])
    np.testing.assert_array_equal(out["sex"].numpy().reshape(-1), [1, 0, 0, 1])
    # serving requests carry no labels: the scoring signatures need none
    unlabelled = [_example({k: v for k, v in r.items() if k not in ("click", "like", "sex")}) for r in ROWS]
    assert exported.signatures["serving_default"](examples=tf.constant(unlabelled))["click"].shape == (4, 1)
