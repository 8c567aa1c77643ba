"""Shared building blocks: every architecture in `mtrec.models` is a short composition of these.

All layers register as `mtrec>Name` and round-trip through `get_config`, so saved models reload
without custom-object plumbing.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs
import tf_keras as keras

from mtrec.config import TEXT_TABLES
from mtrec.transformed import REVIEWS_BEFORE, text_key_name

USER_ID, ITEM_ID = TEXT_TABLES["users"], TEXT_TABLES["items"]


def _mlp_units(units: Sequence[int]) -> List[int]:
    if not units or any(u <= 0 for u in units):
        raise ValueError(f"MLP units must be positive, got {list(units)}")
    return list(units)


@keras.utils.register_keras_serializable(package="mtrec")
class MLP(keras.layers.Layer):
    """Dense ReLU stack with optional dropout: the shared bottom and the two towers (the experts and
    task towers, which repeat side by side, are `StackedMLP`s)."""

    def __init__(self, units: Sequence[int], dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.units, self.dropout = _mlp_units(units), dropout
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


def _glorot_per_slice(fan_in: int, fan_out: int) -> keras.initializers.Initializer:
    """Glorot-uniform for each [fan_in, fan_out] slice of a stacked kernel: every stacked layer
    starts as the Dense it replaces would (Keras's GlorotUniform reads a 3-d shape as a conv's)."""
    limit = float(np.sqrt(6.0 / (fan_in + fan_out)))
    return keras.initializers.RandomUniform(-limit, limit)


@keras.utils.register_keras_serializable(package="mtrec")
class StackedDense(keras.layers.Layer):
    """`count` Dense layers of one width as one batched matmul: the experts of MMoE and PLE, a
    level's gates, the task towers. At recommender sizes a Dense costs its kernel launches and its
    optimizer update more than its flops, so one product over stacked weights replaces `count` of each.

    Input [batch, d], which every layer reads, or [batch, count, d], one slice each; output
    [batch, count, units]. Layer k is `activation(x_k @ kernel[k] + bias[k])`.
    """

    def __init__(self, count: int, units: int, activation=None, **kwargs):
        super().__init__(**kwargs)
        if count < 1 or units < 1:
            raise ValueError(f"StackedDense needs count ({count}) and units ({units}) >= 1")
        self.count, self.units, self.activation = count, units, keras.activations.get(activation)

    def build(self, input_shape):
        width = int(input_shape[-1])
        self.kernel = self.add_weight(name="kernel", shape=(self.count, width, self.units),
                                      initializer=_glorot_per_slice(width, self.units))
        self.bias = self.add_weight(name="bias", shape=(self.count, self.units), initializer="zeros")
        super().build(input_shape)

    def call(self, x):
        # As matmuls, not the einsums they are ("bd,kdu->bku", "bkd,kdu->bku"): oneDNN's einsum
        # took 11% (shared input) and 60% (one slice each) longer at our sizes (bench/README).
        if x.shape.rank == 2:  # one [d, count * units] product for all
            width = self.kernel.shape[1]
            side_by_side = tf.reshape(tf.transpose(self.kernel, [1, 0, 2]), [width, self.count * self.units])
            y = tf.reshape(tf.matmul(x, side_by_side), [-1, self.count, self.units])
        else:  # a batch of `count` products
            y = tf.transpose(tf.matmul(tf.transpose(x, [1, 0, 2]), self.kernel), [1, 0, 2])
        return self.activation(y + self.bias)

    def get_config(self):
        return {**super().get_config(), "count": self.count, "units": self.units,
                "activation": keras.activations.serialize(self.activation)}


@keras.utils.register_keras_serializable(package="mtrec")
class StackedMLP(keras.layers.Layer):
    """`count` MLPs of the same units (`MLP` each) run side by side as `StackedDense` layers.
    Input as StackedDense's; output [batch, count, units[-1]]."""

    def __init__(self, count: int, units: Sequence[int], dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.count, self.units, self.dropout = count, _mlp_units(units), dropout
        self.dense = [StackedDense(count, u, "relu", name=f"dense_{i}") for i, u in enumerate(self.units)]
        self.drop = [keras.layers.Dropout(dropout) for _ in self.units] if dropout else []

    def call(self, x, training=None):
        for i, dense in enumerate(self.dense):
            x = dense(x)
            if self.drop:
                x = self.drop[i](x, training=training)
        return x

    def get_config(self):
        return {**super().get_config(), "count": self.count, "units": self.units, "dropout": self.dropout}


@keras.utils.register_keras_serializable(package="mtrec")
class MixtureOfExperts(keras.layers.Layer):
    """Multi-gate mixture of experts (Ma et al., KDD 2018).

    `num_experts` expert MLPs see the same input; each of `num_tasks` softmax gates mixes them for
    its task, so tasks share what helps them and keep apart what does not. The experts are one
    `StackedMLP` and the gates one `StackedDense`.
    Input [batch, d]; output: a list of `num_tasks` tensors [batch, expert_units[-1]].
    With `return_gates=True` in call, also the gate weights [batch, num_experts] per task.
    """

    def __init__(self, num_experts: int, expert_units: Sequence[int], num_tasks: int, dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        if num_experts < 1 or num_tasks < 1:
            raise ValueError(f"num_experts ({num_experts}) and num_tasks ({num_tasks}) must be >= 1")
        self.num_experts, self.expert_units, self.num_tasks, self.dropout = num_experts, list(expert_units), num_tasks, dropout
        self.experts = StackedMLP(num_experts, expert_units, dropout, name="experts")
        self.gates = StackedDense(num_tasks, num_experts, "softmax", name="gates")

    def call(self, x, training=None, return_gates=False):
        experts = self.experts(x, training=training)  # [b, E, u]
        gates = self.gates(x)  # [b, T, E]
        mixed = tf.unstack(tf.matmul(gates, experts), num=self.num_tasks, axis=1)  # [b, T, E] x [b, E, u]
        return (mixed, tf.unstack(gates, num=self.num_tasks, axis=1)) if return_gates else mixed

    def get_config(self):
        return {**super().get_config(), "num_experts": self.num_experts, "expert_units": self.expert_units,
                "num_tasks": self.num_tasks, "dropout": self.dropout}


@dataclasses.dataclass
class ReviewTable:
    """Each item's mean review vector after its first k reviews, k = 1..counts[i], in one table:
    the rows of `items[i]` follow those of the items before it. `valid` is 0 where none of the first k
    reviews had text."""

    items: List[str]
    counts: List[int]
    vectors: np.ndarray  # [sum(counts), d]
    valid: np.ndarray  # [sum(counts)]

    @classmethod
    def from_reviews(cls, items: np.ndarray, has_text: np.ndarray, vectors: np.ndarray) -> "ReviewTable":
        """From every review, sorted by item and time (the TextEmbedder's `reviews.npz`)."""
        names, starts, counts = np.unique(items, return_index=True, return_counts=True)
        texts = has_text.astype(np.float32)
        means, valid = np.zeros_like(vectors, dtype=np.float32), np.zeros(len(items), np.float32)
        for start, count in zip(starts, counts):
            block = slice(start, start + count)
            written = np.cumsum(texts[block])
            means[block] = np.cumsum(vectors[block] * texts[block, None], axis=0) / np.maximum(written, 1)[:, None]
            valid[block] = written > 0
        return cls([str(n) for n in names], counts.tolist(), means, valid)


@dataclasses.dataclass
class TextTables:
    """The catalogue's text vectors, {id feature: (ids, vectors [n, d])}, the items' review
    vectors (or None), and how the model uses them (`config.text`: projection size, user-item match)."""

    vectors: Dict[str, Tuple[List[str], np.ndarray]]
    projection_dim: int = 16
    match: bool = True
    reviews: Optional[ReviewTable] = None
    # {id feature: its OOV rows}: ids there whose index is past the vocabulary take their embedding
    # from their text (`UnknownIdsFromText`); empty: from their OOV row.
    oov_buckets: Dict[str, int] = dataclasses.field(default_factory=dict)

    def only(self, id_features) -> "TextTables":
        """The tables of these id features (a two-tower model's tower sees its own side; reviews,
        which need the review count beside the item id, are for ranking models)."""
        return dataclasses.replace(self, vectors={k: v for k, v in self.vectors.items() if k in id_features},
                                   reviews=None)


@keras.utils.register_keras_serializable(package="mtrec")
class TextVectors(keras.layers.Layer):
    """A catalogue's frozen text vectors, looked up by raw id inside the graph: a Keras
    StringLookup and a gather, core TensorFlow ops that stock TF Serving runs. An id without a
    vector (no text, or not in the catalogue the model was trained with) gets a learned default."""

    def __init__(self, ids: Sequence[str], dimension: int, vectors: Optional[np.ndarray] = None, **kwargs):
        super().__init__(dtype="float32", **{k: v for k, v in kwargs.items() if k != "dtype"})
        self.ids, self.dimension = [str(i) for i in ids], int(dimension)
        self.lookup = keras.layers.StringLookup(vocabulary=self.ids, num_oov_indices=1, mask_token=None,
                                                name="ids")
        initial = "zeros" if vectors is None else keras.initializers.Constant(
            np.concatenate([np.zeros((1, self.dimension), np.float32), np.asarray(vectors, np.float32)]))
        # Frozen: the encoder's space stays the one new items are embedded in after training.
        self.table = self.add_weight(name="table", shape=(len(self.ids) + 1, self.dimension), initializer=initial,
                                     trainable=False)
        self.default = self.add_weight(name="default", shape=(self.dimension,), initializer="zeros")

    def call(self, keys):
        index = tf.reshape(self.lookup(keys), [-1])  # 0: not in the catalogue
        return tf.where(tf.expand_dims(index > 0, 1), tf.gather(self.table, index), self.default)

    def get_config(self):
        return {**super().get_config(), "ids": self.ids, "dimension": self.dimension}


@keras.utils.register_keras_serializable(package="mtrec")
class ReviewVectors(keras.layers.Layer):
    """An item's mean review vector after the reviews it had when shown (`item_reviews_before`;
    -1, missing: all the reviews the model knows), looked up by raw id and count: a StringLookup,
    a clip and a gather. An item without a review with text then gets a learned default."""

    def __init__(self, items: Sequence[str], counts: Sequence[int], dimension: int, table: Optional[ReviewTable] = None,
                 **kwargs):
        super().__init__(dtype="float32", **{k: v for k, v in kwargs.items() if k != "dtype"})
        self.items, self.counts, self.dimension = [str(i) for i in items], [int(c) for c in counts], int(dimension)
        self.lookup = keras.layers.StringLookup(vocabulary=self.items, num_oov_indices=1, mask_token=None, name="items")
        rows = sum(self.counts) + 1  # row 0: no review vector
        vectors = None if table is None else np.concatenate([np.zeros((1, self.dimension)), table.vectors])
        valid = None if table is None else np.concatenate([[0.0], table.valid])
        self.table = self.add_weight(name="table", shape=(rows, self.dimension), trainable=False,
                                     initializer="zeros" if table is None else keras.initializers.Constant(vectors))
        self.valid = self.add_weight(name="valid", shape=(rows,), trainable=False,
                                     initializer="zeros" if table is None else keras.initializers.Constant(valid))
        self.default = self.add_weight(name="default", shape=(self.dimension,), initializer="zeros")
        self._counts = np.array([0] + self.counts, np.int64)
        self._offsets = np.concatenate([[0], np.cumsum([0] + self.counts[:-1])]).astype(np.int64)

    def call(self, inputs):
        keys, seen = inputs
        item = tf.reshape(self.lookup(keys), [-1])  # 0: an item without reviews
        known = tf.gather(self._counts, item)
        seen = tf.reshape(tf.cast(seen, tf.int64), [-1])
        count = tf.where(seen < 0, known, tf.minimum(seen, known))
        row = tf.where(count > 0, tf.gather(self._offsets, item) + count, 0)
        found = tf.expand_dims(tf.gather(self.valid, row) > 0, 1)
        return tf.where(found, tf.gather(self.table, row), self.default)

    def get_config(self):
        return {**super().get_config(), "items": self.items, "counts": self.counts, "dimension": self.dimension}


@keras.utils.register_keras_serializable(package="mtrec")
class UnknownIdsFromText(keras.layers.Layer):
    """DropoutNet (Volkovs et al., NeurIPS 2017): an id past the vocabulary (a new item, or one id
    dropout hid in training) gets, in place of its OOV row, a learned map of its text vector into
    the id embeddings' space, so everything after the embeddings reads a new item's text as it
    reads a known item's id. The map learns from the ids id dropout hides.

    Inputs: the fused embeddings [batch, features * dimension], the id feature [batch, 1] (its
    rows are at `position`) and its text vectors [batch, d]. Output: the embeddings, that id's
    replaced where it is unknown (index >= `known`).
    """

    def __init__(self, known: int, position: int, dimension: int, **kwargs):
        super().__init__(**kwargs)
        self.known, self.position, self.dimension = int(known), int(position), int(dimension)
        self.map = keras.layers.Dense(self.dimension, name="map")

    def call(self, inputs):
        embedded, ids, vectors = inputs
        start, end = self.position * self.dimension, (self.position + 1) * self.dimension
        unknown = tf.reshape(tf.cast(ids, tf.int64), [-1, 1]) >= self.known
        own = tf.where(unknown, tf.cast(self.map(vectors), embedded.dtype), embedded[:, start:end])
        return tf.concat([embedded[:, :start], own, embedded[:, end:]], axis=1)

    def get_config(self):
        return {**super().get_config(), "known": self.known, "position": self.position, "dimension": self.dimension}


def text_inputs(text: Optional[TextTables]):
    """Inputs (raw ids as strings, review counts), dense parts and the vectors by id feature for
    the text tables: each table's vectors and the items' review vectors through a learned
    projection, and the cosine of the user's and the item's vectors."""
    inputs, parts, vectors = {}, [], {}
    for id_feature, (ids, table) in sorted((text.vectors if text else {}).items()):
        key = text_key_name(id_feature)
        inputs[key] = keras.Input(shape=(1,), dtype=tf.string, name=key)
        vectors[id_feature] = TextVectors(ids, table.shape[1], table, name=f"{id_feature}_text")(inputs[key])
        parts.append(keras.layers.Dense(text.projection_dim, name=f"{id_feature}_text_projection")(vectors[id_feature]))
    if text and text.match and {USER_ID, ITEM_ID} <= set(vectors):
        parts.append(keras.layers.Dot(axes=1, normalize=True, name="text_match")([vectors[USER_ID], vectors[ITEM_ID]]))
    if text and text.reviews:
        key = text_key_name(ITEM_ID)
        inputs.setdefault(key, keras.Input(shape=(1,), dtype=tf.string, name=key))
        inputs[REVIEWS_BEFORE] = keras.Input(shape=(1,), dtype=tf.int64, name=REVIEWS_BEFORE)
        reviews = text.reviews
        vector = ReviewVectors(reviews.items, reviews.counts, reviews.vectors.shape[1], reviews,
                               name="item_reviews_text")([inputs[key], inputs[REVIEWS_BEFORE]])
        parts.append(keras.layers.Dense(text.projection_dim, name="item_reviews_text_projection")(vector))
    return inputs, parts, vectors


@keras.utils.register_keras_serializable(package="mtrec")
class FusedEmbedding(keras.layers.Layer):
    """The embedding tables of several categorical features as one table, each feature's rows at
    its offset: one gather and one optimizer update per step instead of one per feature
    (the per-feature ops, not the rows, are the cost at recommender sizes on CPU). The same values
    as a `keras.layers.Embedding` per feature, concatenated in `sizes`' sorted order.

    Input {feature: [batch, 1] ids in [0, size)}; output [batch, len(sizes) * dimension]. An id out
    of its feature's range is clipped into it rather than read from its neighbour's rows.
    """

    def __init__(self, sizes: Dict[str, int], dimension: int, l2: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.sizes, self.dimension, self.l2 = {k: int(v) for k, v in sorted(sizes.items())}, int(dimension), l2
        self.names = list(self.sizes)
        self.offsets = dict(zip(self.names, np.cumsum([0] + list(self.sizes.values())[:-1]).tolist()))
        self.embeddings = self.add_weight(
            name="embeddings", shape=(sum(self.sizes.values()), self.dimension),
            initializer=keras.initializers.RandomUniform(-0.05, 0.05),  # keras.layers.Embedding's
            regularizer=keras.regularizers.l2(l2) if l2 else None)

    def rows(self, name: str) -> slice:
        """`name`'s rows in the table."""
        return slice(self.offsets[name], self.offsets[name] + self.sizes[name])

    def call(self, inputs):
        ids = tf.concat([tf.reshape(tf.cast(inputs[n], tf.int64), [-1, 1]) for n in self.names], axis=1)
        ids = tf.clip_by_value(ids, 0, [s - 1 for s in self.sizes.values()]) + list(self.offsets.values())
        return tf.reshape(tf.gather(self.embeddings, ids), [-1, len(self.names) * self.dimension])

    def get_config(self):
        return {**super().get_config(), "sizes": self.sizes, "dimension": self.dimension, "l2": self.l2}


def feature_inputs(vocab_sizes: Dict[str, int], numeric: List[str], embedding_dim: int, embedding_l2: float = 0.0,
                   text: Optional[TextTables] = None):
    """Keras inputs for transformed features and their dense concatenation.

    Args:
      vocab_sizes: categorical feature -> number of ids (vocabulary + OOV buckets); their embeddings
        are one `FusedEmbedding` named `embeddings`.
      numeric: float features, already normalised by Transform.
      embedding_l2: L2 penalty on the embedding tables: shrinks rarely seen ids toward zero.
      text: text vectors by id feature (`text_inputs`), or None; with `text.oov_buckets`, an
        unknown id's embedding comes from its text (`UnknownIdsFromText`).
    Returns:
      (inputs dict of [batch, 1] tensors, [batch, d] float tensor).
    """
    inputs, parts, vectors = text_inputs(text)
    if vocab_sizes:
        ids = {name: keras.Input(shape=(1,), dtype=tf.int64, name=name) for name in sorted(vocab_sizes)}
        inputs.update(ids)
        fused = FusedEmbedding(vocab_sizes, embedding_dim, embedding_l2, name="embeddings")
        embedded = fused(ids)
        for name, oov in sorted((text.oov_buckets if text else {}).items()):
            if name in ids and name in vectors:
                embedded = UnknownIdsFromText(vocab_sizes[name] - oov, fused.names.index(name), embedding_dim,
                                              name=f"{name}_unknown_from_text")([embedded, ids[name], vectors[name]])
        parts.append(embedded)
    for name in sorted(numeric):
        inputs[name] = keras.Input(shape=(1,), dtype=tf.float32, name=name)
        parts.append(inputs[name])
    if len(parts) == 1:  # Concatenate of one tensor does not survive a SavedModel reload
        return inputs, parts[0]
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


@keras.utils.register_keras_serializable(package="mtrec")
class TaskTowers(keras.layers.Layer):
    """Every task's tower MLP and output logit, side by side as `StackedMLP` and `StackedDense`.

    Input: one tensor [batch, d] every task reads, or a list of one per task. Output: the list of
    the tasks' logits [batch, 1], float32 even under a mixed-precision policy (losses and scores
    need the full range).
    """

    def __init__(self, num_tasks: int, tower_units: Sequence[int], dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.num_tasks, self.tower_units, self.dropout = num_tasks, list(tower_units), dropout
        self.towers = StackedMLP(num_tasks, tower_units, dropout, name="towers") if tower_units else None
        self.logits = StackedDense(num_tasks, 1, name="logits", dtype="float32")

    def call(self, x, training=None):
        if isinstance(x, (list, tuple)):
            x = tf.stack(x, axis=1)  # [b, T, d]
        if self.towers:
            x = self.towers(x, training=training)
        return tf.unstack(self.logits(x), num=self.num_tasks, axis=1)

    def get_config(self):
        return {**super().get_config(), "num_tasks": self.num_tasks, "tower_units": self.tower_units,
                "dropout": self.dropout}


def task_heads(x, tasks, tower_units: Sequence[int], dropout: float = 0.0) -> Dict[str, tf.Tensor]:
    """{task name: output named after the task}: its tower on `x` (one tensor all tasks read, or
    a list of one per task), then sigmoid for binary tasks, linear for regression."""
    logits = TaskTowers(len(tasks), tower_units, dropout, name="task_towers")(x)
    return {t.name: keras.layers.Activation(t.kind.activation, name=t.name, dtype="float32")(logit)
            for t, logit in zip(tasks, logits)}


@keras.utils.register_keras_serializable(package="mtrec")
class ExtractionLayer(keras.layers.Layer):
    """One level of PLE's customized gate control (Tang et al., RecSys 2020).

    Each task has `task_experts` experts of its own; `shared_experts` experts serve every task.
    Task t's gate mixes its own and the shared experts, so a task can ignore what the others
    learn (the seesaw MMoE suffers from); with `output_shared`, a shared gate over all experts
    feeds the next level's shared experts.

    Input: a list of num_tasks + 1 tensors [batch, d] (one per task, then the shared input; at the
    first level all the same). Output: the list of num_tasks task tensors [batch, expert_units[-1]],
    plus the shared one when `output_shared`. With `return_gates=True`, also the gate weights.
    """

    def __init__(self, num_tasks: int, task_experts: int, shared_experts: int, expert_units: Sequence[int],
                 output_shared: bool, dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        if min(num_tasks, task_experts, shared_experts) < 1:
            raise ValueError(f"num_tasks ({num_tasks}), task_experts ({task_experts}) and shared_experts "
                             f"({shared_experts}) must be >= 1")
        self.num_tasks, self.task_experts, self.shared_experts = num_tasks, task_experts, shared_experts
        self.expert_units, self.output_shared, self.dropout = list(expert_units), output_shared, dropout
        # Task t's experts are rows t * task_experts ... of one stack; the shared experts another.
        self.task_expert_mlps = StackedMLP(num_tasks * task_experts, expert_units, dropout, name="task_experts")
        self.shared_expert_mlps = StackedMLP(shared_experts, expert_units, dropout, name="shared_experts")
        self.task_gates = StackedDense(num_tasks, task_experts + shared_experts, "softmax", name="task_gates")
        self.shared_gate = (keras.layers.Dense(num_tasks * task_experts + shared_experts, activation="softmax",
                                               name="shared_gate") if output_shared else None)

    def call(self, inputs, training=None, return_gates=False):
        *task_inputs, shared_input = inputs
        t, k = self.num_tasks, self.task_experts
        if all(x is shared_input for x in task_inputs):  # the first level: one input for all
            per_task = per_expert = shared_input
        else:
            per_task = tf.stack(task_inputs, axis=1)  # [b, T, d]
            per_expert = tf.repeat(per_task, k, axis=1)  # [b, T * k, d]: each task's input to its experts
        own = self.task_expert_mlps(per_expert, training=training)  # [b, T * k, u]
        shared = self.shared_expert_mlps(shared_input, training=training)  # [b, S, u]
        units = self.expert_units[-1]
        own_by_task = tf.reshape(own, [-1, t, k, units])
        shared_by_task = tf.repeat(tf.expand_dims(shared, 1), t, axis=1)  # [b, T, S, u]
        gates = self.task_gates(per_task)  # [b, T, k + S]
        mixed = tf.einsum("bte,bteu->btu", gates, tf.concat([own_by_task, shared_by_task], axis=2))
        outputs, weights = tf.unstack(mixed, num=t, axis=1), tf.unstack(gates, num=t, axis=1)
        if self.output_shared:
            shared_weights = self.shared_gate(shared_input)
            outputs.append(tf.einsum("be,beu->bu", shared_weights, tf.concat([own, shared], axis=1)))
            weights.append(shared_weights)
        return (outputs, weights) if return_gates else outputs

    def get_config(self):
        return {**super().get_config(), "num_tasks": self.num_tasks, "task_experts": self.task_experts,
                "shared_experts": self.shared_experts, "expert_units": self.expert_units,
                "output_shared": self.output_shared, "dropout": self.dropout}


@keras.utils.register_keras_serializable(package="mtrec")
class CrossStitch(keras.layers.Layer):
    """Cross-stitch unit (Misra et al., CVPR 2016): each task's column continues from a learned
    linear mix of every column, so the network learns how much to share at each depth.

    Input and output: a list of num_tasks tensors [batch, d]. out_i = sum_j alpha[i, j] * x_j, with
    alpha starting at `self_weight` on the diagonal and the rest split evenly off it.
    """

    def __init__(self, self_weight: float = 0.9, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= self_weight <= 1.0:
            raise ValueError(f"self_weight must be in [0, 1], got {self_weight}")
        self.self_weight = self_weight

    def build(self, input_shape):
        n = len(input_shape)
        other = (1.0 - self.self_weight) / (n - 1) if n > 1 else 0.0
        start = np.full((n, n), other, dtype="float32")
        np.fill_diagonal(start, self.self_weight if n > 1 else 1.0)
        self.alpha = self.add_weight(name="alpha", shape=(n, n), initializer=keras.initializers.Constant(start))
        super().build(input_shape)

    def call(self, inputs):
        stacked = tf.stack(inputs, axis=1)  # [b, T, d]
        mixed = tf.einsum("ij,bjd->bid", self.alpha, stacked)
        return tf.unstack(mixed, num=len(inputs), axis=1)

    def get_config(self):
        return {**super().get_config(), "self_weight": self.self_weight}
