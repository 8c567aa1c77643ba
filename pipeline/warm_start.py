"""Warm start: a day's Trainer starts from the latest blessed model instead of from scratch.

Every Trainer run keeps its network's weights and its id vocabularies beside the exported model
(`WarmStart/` in the Model artifact, next to `Format-Serving`; not pushed). The next run, given
that model as `base_model`, copies every weight of the same shape, and rebuilds each vocabulary
feature's rows of the embedding table row by row: an id both vocabularies hold keeps its vector,
an id new to this run keeps its fresh initial row, an id no longer in the vocabulary goes, and the
OOV buckets keep theirs; hashed and bucketised features keep their rows. Frozen text tables are
this run's (the catalogue's current vectors). A network of another shape (architecture, sizes or
features changed) starts from scratch, said in the log.
"""
from __future__ import annotations

import io
import json
import os
from typing import Dict, Optional

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras
from absl import logging

from mtrec.config import PipelineConfig
from mtrec.models.layers import FusedEmbedding

STATE_DIR = "WarmStart"
_WEIGHTS, _INDEX = "weights.npz", "index.json"


def embedding_rows(network: keras.Model) -> Dict[int, Dict[str, slice]]:
    """{index in network.weights: {feature: its rows}} of the network's embedding tables (a
    `FusedEmbedding` per network; the two-tower model has one per tower)."""
    position = {w.ref(): i for i, w in enumerate(network.weights)}
    return {position[m.embeddings.ref()]: {name: m.rows(name) for name in m.names}
            for m in network.submodules if isinstance(m, FusedEmbedding)}


def _vocabulary(tft_output: tft.TFTransformOutput, name: str) -> list:
    return [t.decode("utf-8", "surrogateescape") if isinstance(t, bytes) else str(t)
            for t in tft_output.vocabulary_by_name(name)]


def save(network: keras.Model, tft_output: tft.TFTransformOutput, config: PipelineConfig, model_uri: str) -> str:
    """Writes the network's weights and its embedding tables' vocabularies under `model_uri`."""
    path = os.path.join(model_uri, STATE_DIR)
    tf.io.gfile.makedirs(path)
    weights = network.get_weights()
    tables = embedding_rows(network)
    vocabulary = set(config.features.vocabulary)
    index = {"shapes": [list(w.shape) for w in weights],
             "tables": {str(i): {f: [rows.start, rows.stop] for f, rows in features.items()}
                        for i, features in tables.items()},
             "vocabularies": {f: _vocabulary(tft_output, f) for features in tables.values() for f in features
                              if f in vocabulary}}
    buffer = io.BytesIO()  # np.savez seeks back into what it wrote, which a GFile does not allow
    np.savez(buffer, *weights)
    with tf.io.gfile.GFile(os.path.join(path, _WEIGHTS), "wb") as f:
        f.write(buffer.getvalue())
    with tf.io.gfile.GFile(os.path.join(path, _INDEX), "w") as f:
        f.write(json.dumps(index))
    return path


def _load(base_model: str):
    """(weights, index) kept beside `base_model` (fn_args.base_model: its Format-Serving dir), or None."""
    path = os.path.join(os.path.dirname(base_model.rstrip("/")), STATE_DIR)
    if not tf.io.gfile.exists(os.path.join(path, _INDEX)):
        return None
    with tf.io.gfile.GFile(os.path.join(path, _WEIGHTS), "rb") as f:
        arrays = np.load(io.BytesIO(f.read()))
    weights = [arrays[f"arr_{i}"] for i in range(len(arrays.files))]
    with tf.io.gfile.GFile(os.path.join(path, _INDEX)) as f:
        return weights, json.loads(f.read())


def remap_rows(old: np.ndarray, old_vocabulary: list, fresh: np.ndarray, new_vocabulary: list) -> Dict[str, int]:
    """Fills `fresh` (new vocabulary + OOV rows) in place from `old`: rows of ids in both
    vocabularies, and the OOV buckets; returns how many ids were known, new and dropped."""
    position = {token: i for i, token in enumerate(old_vocabulary)}
    known = [(i, position[t]) for i, t in enumerate(new_vocabulary) if t in position]
    if known:
        new_rows, old_rows = map(list, zip(*known))
        fresh[new_rows] = old[old_rows]
    oov = min(old.shape[0] - len(old_vocabulary), fresh.shape[0] - len(new_vocabulary))
    if oov > 0:
        fresh[len(new_vocabulary):len(new_vocabulary) + oov] = old[len(old_vocabulary):len(old_vocabulary) + oov]
    return {"known": len(known), "new": len(new_vocabulary) - len(known), "dropped": len(old_vocabulary) - len(known)}


def restore(network: keras.Model, base_model: Optional[str], tft_output: tft.TFTransformOutput,
            config: PipelineConfig) -> Dict:
    """Initialises `network` from the model at `base_model`; returns what was done (`warm_start`:
    False with the reason when it was not)."""
    if not base_model:
        return {"warm_start": False, "reason": "no base model (none blessed yet, or not a daily log)"}
    state = _load(base_model)
    if state is None:
        return {"warm_start": False, "reason": f"{base_model} has no {STATE_DIR} (trained before warm start)"}
    old_weights, index = state
    fresh = network.get_weights()
    tables = embedding_rows(network)
    old_tables = {int(i): {f: slice(*rows) for f, rows in features.items()}
                  for i, features in index.get("tables", {}).items()}
    if len(old_weights) != len(fresh) or {i: sorted(t) for i, t in tables.items()} != \
            {i: sorted(t) for i, t in old_tables.items()}:
        return _cold(base_model, f"{len(old_weights)} weights against {len(fresh)}, or other embedding tables")
    trainable = {w.ref() for w in network.trainable_weights}
    report = {"warm_start": True, "from": base_model, "copied": 0, "kept_fresh": 0, "embeddings": {}}
    for i, (old, new) in enumerate(zip(old_weights, fresh)):
        if i in tables:
            if old.shape[1:] != new.shape[1:]:
                return _cold(base_model, f"the embeddings are {new.shape[1]} wide, were {old.shape[1]}")
            for feature, rows in tables[i].items():
                old_rows = old_tables[i][feature]
                if feature in index["vocabularies"]:
                    report["embeddings"][feature] = remap_rows(old[old_rows], index["vocabularies"][feature], new[rows],
                                                               _vocabulary(tft_output, feature))
                elif old_rows.stop - old_rows.start == rows.stop - rows.start:  # hashed or bucketised: same ids
                    new[rows] = old[old_rows]
                else:
                    return _cold(base_model, f"{feature} has {rows.stop - rows.start} ids, had "
                                             f"{old_rows.stop - old_rows.start}")
        elif old.shape == new.shape:
            fresh[i] = old
            report["copied"] += 1
        elif network.weights[i].ref() not in trainable:  # a frozen text table: this catalogue's vectors
            report["kept_fresh"] += 1
        else:
            return _cold(base_model, f"weight {network.weights[i].name} is {new.shape}, was {old.shape}")
    network.set_weights(fresh)
    logging.info("Warm start from %s: %d weights copied, embeddings %s", base_model, report["copied"],
                 report["embeddings"])
    return report


def _cold(base_model: str, reason: str) -> Dict:
    logging.warning("No warm start from %s: %s; training from scratch", base_model, reason)
    return {"warm_start": False, "from": base_model, "reason": reason}
