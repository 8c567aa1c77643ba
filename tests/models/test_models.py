import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from mtrec.config import ModelConfig, PipelineConfig
from mtrec.models import ARCHITECTURES, build_model
from mtrec.models.layers import MLP, CrossStitch, ExtractionLayer, MixtureOfExperts

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
    experts = np.stack([e(x).numpy() for e in layer.experts], axis=1)
    np.testing.assert_allclose(mixed[1].numpy(), np.einsum("be,beu->bu", gates[1].numpy(), experts), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("layer", [MLP([8, 4], dropout=0.1), MixtureOfExperts(3, [4], 2, dropout=0.1),
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
    tables = [layer.embeddings for layer in model.layers if layer.name.endswith("_embedding")]
    expected = 1e-3 * sum(float(tf.reduce_sum(t ** 2)) for t in tables)
    np.testing.assert_allclose(float(tf.add_n(model.losses)), expected, rtol=1e-5)
