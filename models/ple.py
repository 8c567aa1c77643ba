"""PLE (Tang et al., RecSys 2020): stacked CGC levels of task-specific and shared experts."""
import tf_keras as keras

from mtrec.models.layers import ExtractionLayer, cross, feature_inputs, task_heads


def build(vocab_sizes, numeric, tasks, config, text=None) -> keras.Model:
    inputs, x = feature_inputs(vocab_sizes, numeric, config.embedding_dim, config.embedding_l2, text)
    x = cross(x, config.cross_layers, config.cross_projection_dim)
    streams = [x] * (len(tasks) + 1)  # one per task, then the shared stream
    for level in range(config.levels):
        last = level == config.levels - 1
        streams = ExtractionLayer(len(tasks), config.task_experts, config.num_experts, config.expert_units,
                                  output_shared=not last, dropout=config.dropout, name=f"cgc_{level}")(streams)
    outputs = task_heads(streams, tasks, config.tower_units, config.dropout)
    return keras.Model(inputs, outputs, name="ple")
