import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from mtrec.config import ModelConfig, PipelineConfig
from mtrec.models import ARCHITECTURES, build_model
from mtrec.models.layers import (MLP, CrossStitch, ExtractionLayer, FusedEmbedding, MixtureOfExperts, StackedDense,
                                 StackedMLP, TaskTowers)

VOCABS = {"user_id": 50, "item_id": 30, "device": 5}
NUMERIC = ["price"]
TASKS = PipelineConfig().tasks


def _batch(n=8):
    rng = np.random.default_rng(0)
    features = {name: tf.constant(rng.integers(size, size=(n, 1)), tf.int64) for name, size in VOCABS.items()}
    features["price"] = tf.constant(rng.normal(size=(n, 1)), tf.float32)
    return features


EXTRA_OUTPUTS = {"esmm": ["like_ctcvr", "purchase_ctcvr"], "two_tower": ["item_embedding", "query_embedding"]}


def _config(architecture):
    return ModelConfig(architecture=architecture, query_features=["user_id"])


@pytest.mark.parametrize("architecture", sorted(ARCHITECTURES))
def test_one_named_output_per_task_with_the_right_range(architecture):
    model = build_model(architecture, VOCABS, NUMERIC, TASKS, _config(architecture))
    outputs = model(_batch())
    expected = sorted([t.name for t in TASKS] + EXTRA_OUTPUTS.get(architecture, []))
    assert sorted(outputs) == expected
    assert sorted(model.output_names) == expected
    for task in TASKS:
        assert outputs[task.name].shape == (8, 1)
        if task.type == "binary":
            assert np.all((outputs[task.name].numpy() > 0) & (outputs[task.name].numpy() < 1))


@pytest.mark.parametrize("architecture", sorted(ARCHITECTURES))
def test_saved_model_round_trip_gives_the_same_outputs(architecture, tmp_path):
    model = build_model(architecture, VOCABS, NUMERIC, TASKS, _config(architecture))
    batch = _batch()
    expected = model(batch)
    # As the Trainer exports (without traced call functions): Keras rebuilds it from the layers' configs.
    model.save(str(tmp_path / "model"), save_format="tf", save_traces=False)
    reloaded = keras.models.load_model(str(tmp_path / "model"))
    for name, value in reloaded(batch).items():
        np.testing.assert_allclose(value.numpy(), expected[name].numpy(), rtol=1e-6)


def test_mmoe_gates_are_distributions_and_mix_the_experts():
    layer = MixtureOfExperts(num_experts=3, expert_units=[4], num_tasks=2)
    x = tf.random.normal((5, 6), seed=1)
    mixed, gates = layer(x, return_gates=True)
    assert len(mixed) == 2 and mixed[0].shape == (5, 4)
    for gate in gates:
        assert gate.shape == (5, 3)
        np.testing.assert_allclose(gate.numpy().sum(axis=1), np.ones(5), rtol=1e-6)
    dense = layer.experts.dense[0]
    experts = np.stack([np.maximum(x.numpy() @ dense.kernel.numpy()[k] + dense.bias.numpy()[k], 0) for k in range(3)],
                       axis=1)
    np.testing.assert_allclose(mixed[1].numpy(), np.einsum("be,beu->bu", gates[1].numpy(), experts), rtol=1e-5, atol=1e-6)


def _as_dense(stacked: StackedDense, k: int, activation=None) -> keras.layers.Dense:
    """Layer k of a StackedDense as the keras Dense it stands for."""
    dense = keras.layers.Dense(stacked.units, activation=activation)
    dense.build((None, stacked.kernel.shape[1]))
    dense.set_weights([stacked.kernel.numpy()[k], stacked.bias.numpy()[k]])
    return dense


def test_stacked_dense_is_count_dense_layers_on_a_shared_or_own_input():
    layer = StackedDense(3, 4, "relu")
    shared = tf.random.normal((5, 6), seed=3)
    out = layer(shared).numpy()
    assert out.shape == (5, 3, 4)
    for k in range(3):
        np.testing.assert_allclose(out[:, k], _as_dense(layer, k, "relu")(shared).numpy(), rtol=1e-5, atol=1e-6)
    own = tf.random.normal((5, 3, 6), seed=4)
    out = layer(own).numpy()
    for k in range(3):
        np.testing.assert_allclose(out[:, k], _as_dense(layer, k, "relu")(own[:, k]).numpy(), rtol=1e-5, atol=1e-6)
    # Each slice starts as a Glorot-uniform Dense kernel of its shape would.
    limit = np.sqrt(6 / (6 + 4))
    assert np.abs(layer.kernel.numpy()).max() <= limit and np.abs(layer.kernel.numpy()).max() > limit / 2


def test_task_towers_give_each_task_its_own_tower_on_its_own_input():
    towers = TaskTowers(2, [8])
    streams = [tf.random.normal((4, 5), seed=5), tf.random.normal((4, 5), seed=6)]
    logits = towers(streams)
    assert len(logits) == 2 and logits[0].shape == (4, 1) and logits[0].dtype == tf.float32
    hidden, out = towers.towers.dense[0], towers.logits
    for t in range(2):
        expected = _as_dense(out, t)(_as_dense(hidden, t, "relu")(streams[t]))
        np.testing.assert_allclose(logits[t].numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)


def test_fused_embedding_reads_each_features_rows_and_clips_out_of_range_ids():
    layer = FusedEmbedding({"user_id": 4, "device": 3}, dimension=2)
    ids = {"user_id": tf.constant([[0], [3], [9]], tf.int64), "device": tf.constant([[2], [0], [-1]], tf.int64)}
    out = layer(ids).numpy()
    table = layer.embeddings.numpy()
    assert out.shape == (3, 4) and table.shape == (7, 2)
    device, user = table[layer.rows("device")], table[layer.rows("user_id")]  # sorted: device first
    np.testing.assert_array_equal(out[:, :2], device[[2, 0, 0]])
    np.testing.assert_array_equal(out[:, 2:], user[[0, 3, 3]])


@pytest.mark.parametrize("layer", [MLP([8, 4], dropout=0.1), MixtureOfExperts(3, [4], 2, dropout=0.1),
                                   StackedDense(2, 3, "softmax"), StackedMLP(2, [4, 2], 0.1), TaskTowers(3, [4], 0.1),
                                   FusedEmbedding({"a": 3, "b": 2}, 4, 0.01),
                                   ExtractionLayer(3, 2, 1, [4], output_shared=True), CrossStitch(0.7)])
def test_layers_round_trip_their_config(layer):
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    registered = keras.utils.get_registered_object(f"mtrec>{type(layer).__name__}")
    assert registered is type(layer)


def test_bad_sizes_fail_early_naming_the_value():
    with pytest.raises(ValueError, match=r"MLP units must be positive, got \[8, 0\]"):
        MLP([8, 0])
    with pytest.raises(ValueError, match="num_experts"):
        MixtureOfExperts(0, [4], 2)
    with pytest.raises(ValueError, match="unknown architecture 'transformer'"):
        build_model("transformer", VOCABS, NUMERIC, TASKS, ModelConfig())


def test_embedding_l2_adds_a_penalty_that_grows_with_the_tables():
    plain = build_model("mmoe", VOCABS, NUMERIC, TASKS, ModelConfig(embedding_l2=0.0))
    assert not plain.losses
    model = build_model("mmoe", VOCABS, NUMERIC, TASKS, ModelConfig(embedding_l2=1e-3))
    tables = [layer.embeddings for layer in model.layers if isinstance(layer, FusedEmbedding)]
    assert len(tables) == 1
    expected = 1e-3 * sum(float(tf.reduce_sum(t ** 2)) for t in tables)
    np.testing.assert_allclose(float(tf.add_n(model.losses)), expected, rtol=1e-5)
