import numpy as np
import tensorflow as tf

from mtrec.config import ModelConfig, PipelineConfig
from mtrec.models import build_model
from mtrec.models.layers import ExtractionLayer


def test_each_task_gate_mixes_its_own_and_the_shared_experts_and_sums_to_one():
    layer = ExtractionLayer(num_tasks=2, task_experts=2, shared_experts=3, expert_units=[4], output_shared=True)
    x = tf.random.normal((5, 6), seed=2)
    outputs, gates = layer([x, x, x], return_gates=True)
    assert len(outputs) == 3 and all(o.shape == (5, 4) for o in outputs)
    assert [g.shape[1] for g in gates] == [2 + 3, 2 + 3, 2 * 2 + 3]  # own + shared; the shared gate sees all
    for gate in gates:
        np.testing.assert_allclose(gate.numpy().sum(axis=1), np.ones(5), rtol=1e-6)
    def expert(mlp, k, inputs):
        dense = mlp.dense[0]
        return np.maximum(inputs.numpy() @ dense.kernel.numpy()[k] + dense.bias.numpy()[k], 0)

    own = [expert(layer.task_expert_mlps, 1 * 2 + k, x) for k in range(2)]  # task 1's: rows 2, 3
    shared = [expert(layer.shared_expert_mlps, k, x) for k in range(3)]
    expected = np.einsum("be,beu->bu", gates[1].numpy(), np.stack(own + shared, axis=1))
    np.testing.assert_allclose(outputs[1].numpy(), expected, rtol=1e-5, atol=1e-6)


def test_a_later_level_feeds_each_task_its_own_stream():
    layer = ExtractionLayer(num_tasks=2, task_experts=2, shared_experts=1, expert_units=[4], output_shared=False)
    streams = [tf.random.normal((5, 6), seed=s) for s in (7, 8, 9)]  # task 0, task 1, shared
    outputs, gates = layer(streams, return_gates=True)
    dense = layer.task_expert_mlps.dense[0]
    own = [np.maximum(streams[1].numpy() @ dense.kernel.numpy()[k] + dense.bias.numpy()[k], 0) for k in (2, 3)]
    shared_dense = layer.shared_expert_mlps.dense[0]
    shared = np.maximum(streams[2].numpy() @ shared_dense.kernel.numpy()[0] + shared_dense.bias.numpy()[0], 0)
    expected = np.einsum("be,beu->bu", gates[1].numpy(), np.stack(own + [shared], axis=1))
    np.testing.assert_allclose(outputs[1].numpy(), expected, rtol=1e-5, atol=1e-6)


def test_last_level_drops_the_shared_stream():
    layer = ExtractionLayer(num_tasks=3, task_experts=1, shared_experts=1, expert_units=[4], output_shared=False)
    x = tf.ones((2, 3))
    assert len(layer([x] * 4)) == 3


def test_ple_stacks_the_configured_levels():
    tasks = PipelineConfig().tasks
    model = build_model("ple", {"user_id": 9}, ["price"], tasks, ModelConfig(architecture="ple", levels=3))
    levels = [layer for layer in model.layers if isinstance(layer, ExtractionLayer)]
    assert [layer.output_shared for layer in levels] == [True, True, False]
