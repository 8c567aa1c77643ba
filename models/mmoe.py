"""MMoE (Ma et al., KDD 2018): experts shared by all tasks, mixed per task by softmax gates."""
import tf_keras as keras

from mtrec.models.layers import cross, MixtureOfExperts, feature_inputs, task_heads


def build(vocab_sizes, numeric, tasks, config, text=None) -> keras.Model:
    inputs, x = feature_inputs(vocab_sizes, numeric, config.embedding_dim, config.embedding_l2, text)
    x = cross(x, config.cross_layers, config.cross_projection_dim)
    mixed = MixtureOfExperts(config.num_experts, config.expert_units, len(tasks), config.dropout, name="mmoe")(x)
    outputs = task_heads(mixed, tasks, config.tower_units, config.dropout)
    return keras.Model(inputs, outputs, name="mmoe")
