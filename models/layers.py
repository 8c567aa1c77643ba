"""Shared building blocks: every architecture in `mtrec.models` is a short composition of these.

All layers register as `mtrec>Name` and round-trip through `get_config`, so saved models reload
without custom-object plumbing.
"""
from __future__ import annotations

from typing import Dict, List, Sequence

import tensorflow as tf
import tensorflow_recommenders as tfrs
import tf_keras as keras


@keras.utils.register_keras_serializable(package="mtrec")
class MLP(keras.layers.Layer):
    """Dense ReLU stack with optional dropout; the expert, bottom and tower of every architecture."""

    def __init__(self, units: Sequence[int], dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        if not units or any(u <= 0 for u in units):
            raise ValueError(f"MLP units must be positive, got {list(units)}")
        self.units, self.dropout = list(units), dropout
        self._layers = []
        for i, u in enumerate(self.units):
            self._layers.append(keras.layers.Dense(u, activation="relu", name=f"dense_{i}"))
            if dropout:
                self._layers.append(keras.layers.Dropout(dropout))

    def call(self, x, training=None):
        for layer in self._layers:
            x = layer(x, training=training) if isinstance(layer, keras.layers.Dropout) else layer(x)
        return x

    def get_config(self):
        return {**super().get_config(), "units": self.units, "dropout": self.dropout}


@keras.utils.register_keras_serializable(package="mtrec")
class MixtureOfExperts(keras.layers.Layer):
    """Multi-gate mixture of experts (Ma et al., KDD 2018).

    `num_experts` expert MLPs see the same input; each of `num_tasks` softmax gates mixes them for
    its task, so tasks share what helps them and keep apart what does not.
    Input [batch, d]; output: a list of `num_tasks` tensors [batch, expert_units[-1]].
    With `return_gates=True` in call, also the gate weights [batch, num_experts] per task.
    """

    def __init__(self, num_experts: int, expert_units: Sequence[int], num_tasks: int, dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        if num_experts < 1 or num_tasks < 1:
            raise ValueError(f"num_experts ({num_experts}) and num_tasks ({num_tasks}) must be >= 1")
        self.num_experts, self.expert_units, self.num_tasks, self.dropout = num_experts, list(expert_units), num_tasks, dropout
        self.experts = [MLP(expert_units, dropout, name=f"expert_{i}") for i in range(num_experts)]
        self.gates = [keras.layers.Dense(num_experts, activation="softmax", name=f"gate_{t}") for t in range(num_tasks)]

    def call(self, x, training=None, return_gates=False):
        experts = tf.stack([e(x, training=training) for e in self.experts], axis=1)  # [b, E, u]
        gate_weights = [g(x) for g in self.gates]  # [b, E] each
        mixed = [tf.einsum("be,beu->bu", w, experts) for w in gate_weights]
        return (mixed, gate_weights) if return_gates else mixed

    def get_config(self):
        return {**super().get_config(), "num_experts": self.num_experts, "expert_units": self.expert_units,
                "num_tasks": self.num_tasks, "dropout": self.dropout}


def feature_inputs(vocab_sizes: Dict[str, int], numeric: List[str], embedding_dim: int):
    """Keras inputs for transformed features and their dense concatenation.

    Args:
      vocab_sizes: categorical feature -> number of ids (vocabulary + OOV buckets).
      numeric: float features, already normalised by Transform.
    Returns:
      (inputs dict of [batch, 1] tensors, [batch, d] float tensor).
    """
    inputs, parts = {}, []
    for name, size in sorted(vocab_sizes.items()):
        inputs[name] = keras.Input(shape=(1,), dtype=tf.int64, name=name)
        embedded = keras.layers.Embedding(size, embedding_dim, name=f"{name}_embedding")(inputs[name])
        parts.append(keras.layers.Flatten(name=f"{name}_flat")(embedded))
    for name in sorted(numeric):
        inputs[name] = keras.Input(shape=(1,), dtype=tf.float32, name=name)
        parts.append(inputs[name])
    return inputs, keras.layers.Concatenate(name="features")(parts)


def cross(x, num_layers: int, projection_dim: int | None = None):
    """`num_layers` DCN-v2 cross layers (Wang et al., WWW 2021; TFRS `Cross`) on the feature vector.

    An MLP learns multiplicative feature interactions (user group x item category) slowly; a cross
    layer represents them directly, so the experts and towers start from them.
    """
    x0 = x
    for i in range(num_layers):
        x = tfrs.layers.dcn.Cross(projection_dim=projection_dim, kernel_initializer="glorot_uniform",
                                  name=f"cross_{i}")(x0, x)
    return x


def task_head(x, task, tower_units: Sequence[int], dropout: float = 0.0):
    """Task tower and output named after the task: sigmoid for binary tasks, linear for regression."""
    if tower_units:
        x = MLP(tower_units, dropout, name=f"{task.name}_tower")(x)
    activation = "sigmoid" if task.type == "binary" else None
    return keras.layers.Dense(1, activation=activation, name=task.name)(x)
