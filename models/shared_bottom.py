"""Shared-bottom multi-task model (Caruana, 1997): one MLP for all tasks, one tower per task."""
import tf_keras as keras

from mtrec.models.layers import cross, MLP, feature_inputs, task_heads


def build(vocab_sizes, numeric, tasks, config, text=None) -> keras.Model:
    inputs, x = feature_inputs(vocab_sizes, numeric, config.embedding_dim, config.embedding_l2, text)
    x = cross(x, config.cross_layers, config.cross_projection_dim)
    shared = MLP(config.bottom_units, config.dropout, name="shared_bottom")(x)
    outputs = task_heads(shared, tasks, config.tower_units, config.dropout)
    return keras.Model(inputs, outputs, name="shared_bottom")
