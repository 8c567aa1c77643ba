"""Cross-stitch networks (Misra et al., CVPR 2016): one column per task, mixed after every layer."""
import tf_keras as keras

from mtrec.models.layers import CrossStitch, cross, feature_inputs, task_heads


def build(vocab_sizes, numeric, tasks, config, text=None) -> keras.Model:
    inputs, x = feature_inputs(vocab_sizes, numeric, config.embedding_dim, config.embedding_l2, text)
    x = cross(x, config.cross_layers, config.cross_projection_dim)
    columns = [x] * len(tasks)
    for depth, units in enumerate(config.bottom_units):
        columns = [keras.layers.Dense(units, activation="relu", name=f"{t.name}_column_{depth}")(c)
                   for t, c in zip(tasks, columns)]
        columns = CrossStitch(config.stitch_self_weight, name=f"cross_stitch_{depth}")(columns)
    outputs = task_heads(columns, tasks, config.tower_units, config.dropout)
    return keras.Model(inputs, outputs, name="cross_stitch")
