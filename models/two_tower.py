"""Two towers (TFRS retrieval) with ranking heads on top: retrieve and rank with one model.

The query tower embeds the user side (`model.query_features`), the item tower the rest. Their
dot product is the retrieval score, trained with TFRS's in-batch softmax (`RetrievalObjective`); the
ranking heads (rating, like, ...) read [query, item, query * item], so both share the towers.
The towers are nested models (`query_tower`, `item_tower`) so export can index every item and
serve top-K retrieval beside per-task scores.
"""
import tf_keras as keras

from mtrec.config import RETRIEVAL
from mtrec.models.layers import MLP, feature_inputs, task_heads
from mtrec.transformed import bucket_name, missing_name

QUERY_TOWER, ITEM_TOWER = "query_tower", "item_tower"
QUERY_EMBEDDING, ITEM_EMBEDDING = "query_embedding", "item_embedding"


def is_query_feature(name: str, query_features) -> bool:
    """Query-side feature, counting a numeric feature's Transform outputs (`price_bucket`,
    `price_missing`) with it."""
    return any(name in (q, bucket_name(q), missing_name(q)) for q in query_features)


def _tower(vocab_sizes, numeric, text, config, name):
    inputs, x = feature_inputs(vocab_sizes, numeric, config.embedding_dim, config.embedding_l2, text)
    if config.bottom_units:
        x = MLP(config.bottom_units, config.dropout, name=f"{name}_mlp")(x)
    embedding = keras.layers.Dense(config.embedding_dim, name=f"{name}_embedding", dtype="float32")(x)
    return inputs, keras.Model(inputs, embedding, name=name)


def build(vocab_sizes, numeric, tasks, config, text=None) -> keras.Model:
    def side(query):
        on_side = lambda name: is_query_feature(name, config.query_features) == query  # noqa: E731
        return ({k: v for k, v in vocab_sizes.items() if on_side(k)}, [n for n in numeric if on_side(n)],
                text.only([k for k in text.vectors if on_side(k)]) if text else None)

    query_inputs, query_tower = _tower(*side(True), config, QUERY_TOWER)
    item_inputs, item_tower = _tower(*side(False), config, ITEM_TOWER)
    query, item = query_tower(query_inputs), item_tower(item_inputs)
    pair = keras.layers.Concatenate(name="pair")([query, item, keras.layers.Multiply(name="interaction")([query, item])])
    ranked = [t for t in tasks if t.type != RETRIEVAL]
    outputs = task_heads(pair, ranked, config.tower_units, config.dropout) if ranked else {}
    outputs[QUERY_EMBEDDING] = keras.layers.Identity(name=QUERY_EMBEDDING)(query)
    outputs[ITEM_EMBEDDING] = keras.layers.Identity(name=ITEM_EMBEDDING)(item)
    return keras.Model({**query_inputs, **item_inputs}, outputs, name="two_tower")
