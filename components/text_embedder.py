"""TextEmbedder: a TFX component that encodes the side tables' text with the MiniLM encoder.

Reads `items*` and `users*` from `input_base` (the files LogExampleGen joins), takes each row's
configured text fields (`text.fields`, e.g. items: [title, description]) joined into one text,
and encodes every distinct text once with Beam's RunInference, batched. The `embeddings` artifact
holds, per table, `<table>.npz` (`ids`, `vectors` [n, 384] float32: the rows that have text) and
`embeddings.json` (encoder checksum, counts). The Trainer looks the vectors up by raw id inside
the model, so the examples stay as small as they are.

Reviews (`text.fields: {reviews: [text]}`) come from LogExampleGen's `reviews` artifact: each
review's vector, with its item and time, goes to `reviews.npz` (`ids` the reviews' impression ids,
`items`, `ts`, `has_text`, `vectors`, sorted by item and time), from which the Trainer builds each
item's mean review vector after its first k reviews (`item_reviews_before`). The Trainer reads
items, order and vectors; `ids` and `ts` say which review and when, for whoever audits a vector.

Incremental: vectors are cached under `cache_dir`, keyed by the encoder's weights checksum, the
max length and the text's sha256, so a rerun after a catalogue update encodes only the new or changed texts.
A row whose text fields are all missing, or hold something that is not a string, has no vector
(the model's learned default stands in); such rows are counted, never an error. Unreadable rows are
LogExampleGen's to dead-letter: here they are counted and skipped.
"""
from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import time
import uuid
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import apache_beam as beam
import numpy as np
import tensorflow as tf
from absl import logging
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import KeyedModelHandler, ModelHandler, RunInference
from tfx import types
from tfx.dsl.components.base import base_beam_component, base_beam_executor, executor_spec
from tfx.types import artifact_utils
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from mtrec.components import events as ev
from mtrec.components.log_example_gen import (REVIEWS_FILE, Reviews, _csv_header, _Decode, input_fingerprint,
                                              input_files, read_counters)
from mtrec.config import REVIEWS, TEXT_TABLES  # the tables with text, and the id each is keyed by
from mtrec.terminal import PROGRESS

NAMESPACE = "mtrec.text"
SEPARATOR = ". "  # between a row's text fields
META_FILE = "embeddings.json"
PROGRESS_EVERY_S = 10.0


class TextEmbeddings(types.Artifact):
    """Per side table, `<table>.npz` (`ids`, `vectors`) and `embeddings.json` (encoder, counts)."""

    TYPE_NAME = "mtrec.TextEmbeddings"


class TextEmbedderSpec(types.ComponentSpec):
    PARAMETERS = {
        "input_base": ExecutionParameter(type=str),
        "input_format": ExecutionParameter(type=str),
        "fields": ExecutionParameter(type=str),  # JSON: {table: [field, ...]}
        "encoder_path": ExecutionParameter(type=str, optional=True),
        "max_length": ExecutionParameter(type=int),
        "batch_size": ExecutionParameter(type=int),
        "cache_dir": ExecutionParameter(type=str, optional=True),
        "input_fingerprint": ExecutionParameter(type=str),
    }
    INPUTS = {"reviews": ChannelParameter(type=Reviews, optional=True)}
    OUTPUTS = {"embeddings": ChannelParameter(type=TextEmbeddings)}


def text_of(row: dict, fields: Sequence[str]) -> Tuple[Optional[str], str]:
    """(the row's text, what it is): its present string fields joined, or None with why not.
    What: `text`, `missing` (no field present) or `not_text` (a present value is not a string)."""
    parts = []
    for name in fields:
        value = row.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        if not isinstance(value, str):
            return None, "not_text"
        parts.append(value.strip())
    return (SEPARATOR.join(parts), "text") if parts else (None, "missing")


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class _Rows(beam.DoFn):
    """A side-table line -> (id, text hash, text), counted by what it holds."""

    def __init__(self, table: str, decode: _Decode, fields: Sequence[str]):
        self.table, self.decode, self.fields = table, decode, list(fields)

    def process(self, line: str):
        try:
            row = self.decode(line)
        except ev.BadRecord:
            Metrics.counter(NAMESPACE, f"{self.table}.unreadable").inc()
            return
        key = row.get(TEXT_TABLES[self.table])
        if not isinstance(key, str) or not key:
            Metrics.counter(NAMESPACE, f"{self.table}.no_id").inc()
            return
        text, kind = text_of(row, self.fields)
        Metrics.counter(NAMESPACE, f"{self.table}.{kind}").inc()
        if text is not None:
            yield key, text_hash(text), text


class _ReviewRows(beam.DoFn):
    """A reviews-artifact line -> (impression id, item id, ts, text hash or "", text or None):
    a review without text still counts among its item's reviews, with no vector."""

    def __init__(self, fields: Sequence[str]):
        self.fields = list(fields)

    def process(self, line: str):
        row = json.loads(line)
        text, kind = text_of(row, self.fields)
        Metrics.counter(NAMESPACE, f"{REVIEWS}.{kind}").inc()
        yield row["impression_id"], row["item_id"], row["ts"], text_hash(text) if text else "", text


class SentenceEncoderHandler(ModelHandler):
    """RunInference's view of `mtrec.text.minilm.SentenceEncoder`: batches of texts -> vectors."""

    def __init__(self, encoder_path: Optional[str], max_length: int, batch_size: int):
        from mtrec.text.minilm import SORT_WINDOW
        # RunInference hands over up to SORT_WINDOW texts, which the encoder sorts by length and
        # runs `batch_size` at a time
        super().__init__(min_batch_size=SORT_WINDOW, max_batch_size=SORT_WINDOW)
        self.encoder_path, self.max_length, self.batch_size = encoder_path, max_length, batch_size
        self._encoded, self._started, self._reported = 0, None, 0.0

    def load_model(self):
        from mtrec.text.minilm import SentenceEncoder
        return SentenceEncoder(self.encoder_path, self.max_length, self.batch_size)

    def run_inference(self, batch: Sequence[str], model, inference_args=None) -> Iterable[np.ndarray]:
        self._started = self._started or time.time()
        vectors = model.encode(list(batch))
        self._encoded += len(batch)
        elapsed = time.time() - self._started
        if elapsed - self._reported >= PROGRESS_EVERY_S:
            self._reported = elapsed
            logging.info("%sTextEmbedder: %d texts encoded (%.0f/s)", PROGRESS, self._encoded, self._encoded / elapsed)
        return list(vectors)


class EncodeTexts(beam.PTransform):
    """(key, text) pairs -> one JSON line [key, base64 float32 vector] per distinct key: each text
    encoded once, by RunInference with the MiniLM encoder (`SentenceEncoderHandler`); read back with
    `read_vectors`. Keys are the texts' hashes (`text_hash`), so a text is a key."""

    def __init__(self, encoder_path: Optional[str], max_length: int, batch_size: int):
        super().__init__()
        self.handler = SentenceEncoderHandler(encoder_path, max_length, batch_size)

    def expand(self, pairs):
        return (pairs
                | "Distinct" >> beam.CombinePerKey(lambda texts: next(iter(texts)))
                | "Encode" >> RunInference(KeyedModelHandler(self.handler))
                | "Serialize" >> beam.Map(lambda kv: json.dumps([kv[0], _encode_b64(kv[1])])))


def read_vectors(pattern: str) -> Dict[str, np.ndarray]:
    """{key: vector} from the files `EncodeTexts`' lines were written to."""
    vectors = {}
    for path in tf.io.gfile.glob(pattern):
        with tf.io.gfile.GFile(path) as f:
            vectors.update((key, _decode_b64(v)) for key, v in map(json.loads, f))
    return vectors


def _encode_b64(vector: np.ndarray) -> str:
    return base64.b64encode(np.asarray(vector, np.float32).tobytes()).decode()


def _decode_b64(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), np.float32)


def cache_namespace(cache_dir: str, checksum: str, max_length: int) -> str:
    """Where one encoder's cached vectors at one max length live: vectors of another encoder, or
    of texts cut at another length, never mix in."""
    return os.path.join(cache_dir, f"{checksum[:16]}-{max_length}")


def read_cache(directory: str) -> Dict[str, np.ndarray]:
    """{text sha256: vector} from every `vectors-*.npz` under `directory` (empty if none)."""
    cache: Dict[str, np.ndarray] = {}
    for path in sorted(tf.io.gfile.glob(os.path.join(directory, "vectors-*.npz"))):
        data = _read_npz(path)
        cache.update(zip(data["hashes"].tolist(), data["vectors"]))
    return cache


def _write_npz(path: str, **arrays) -> None:
    buffer = io.BytesIO()  # zip needs a seekable file; GFile (gs://, hdfs://) is written in one go
    np.savez(buffer, **arrays)
    with tf.io.gfile.GFile(path, "wb") as f:
        f.write(buffer.getvalue())


def _read_npz(path: str) -> Dict[str, np.ndarray]:
    with tf.io.gfile.GFile(path, "rb") as f:
        return dict(np.load(io.BytesIO(f.read())))


def read_embeddings(uri: str) -> Dict[str, Tuple[List[str], np.ndarray]]:
    """{table: (ids, vectors [n, d])} of a TextEmbeddings artifact."""
    out = {}
    for path in sorted(tf.io.gfile.glob(os.path.join(uri, "*.npz"))):
        if os.path.basename(path) != f"{REVIEWS}.npz":
            data = _read_npz(path)
            out[os.path.basename(path)[:-4]] = (data["ids"].tolist(), data["vectors"])
    return out


def read_reviews(uri: str) -> Optional[Dict[str, np.ndarray]]:
    """`reviews.npz` of a TextEmbeddings artifact (ids, items, ts, has_text, vectors, sorted by
    item and time), or None if it has no reviews."""
    path = os.path.join(uri, f"{REVIEWS}.npz")
    return _read_npz(path) if tf.io.gfile.exists(path) else None


def embed_tables(pipeline_factory, input_base: str, input_format: str, fields: Dict[str, List[str]], out_uri: str,
                 encoder_path: Optional[str] = None, max_length: int = 64, batch_size: int = 64,
                 cache_dir: Optional[str] = None, reviews_uri: Optional[str] = None) -> Dict:
    """Encodes the tables' texts (and the reviews in `reviews_uri`) into `out_uri` (what the
    executor does); returns the counts."""
    from mtrec.text.minilm import MINILM_SHA256, check_files, default_encoder_path

    checksum = check_files(encoder_path or default_encoder_path(), None if encoder_path else MINILM_SHA256)
    cached_dir = cache_namespace(cache_dir, checksum, max_length) if cache_dir else None
    cache = read_cache(cached_dir) if cached_dir else {}
    scratch = os.path.join(out_uri, ".scratch")
    started = time.time()
    p = pipeline_factory()
    rows = []
    for table, names in sorted(fields.items()):
        if table == REVIEWS:
            if not reviews_uri:
                raise ValueError("TextEmbedder: text.fields names reviews but has no reviews input (LogExampleGen's)")
            reviews = (p | "ReadReviews" >> beam.io.ReadFromText(os.path.join(reviews_uri, f"{REVIEWS_FILE}*"))
                       | "ReviewTexts" >> beam.ParDo(_ReviewRows(names)))
            (reviews | "ReviewKeys" >> beam.Map(lambda r: json.dumps(r[:4]))
             | "WriteReviewKeys" >> beam.io.WriteToText(os.path.join(scratch, f"keys-{REVIEWS}"), file_name_suffix=".jsonl"))
            rows.append(reviews | "WithText" >> beam.Filter(lambda r: r[4] is not None)
                        | "AsRows" >> beam.Map(lambda r: (r[0], r[3], r[4])))
            continue
        if table not in TEXT_TABLES:
            raise ValueError(f"TextEmbedder: text.fields names table {table!r}; tables with text: {sorted(TEXT_TABLES)}")
        pattern = input_files(input_base, table, input_format)
        header = _csv_header(pattern) if input_format == "csv" else None
        parsed = (p | f"Read{table}" >> beam.io.ReadFromText(pattern, skip_header_lines=int(input_format == "csv"))
                  | f"Texts{table}" >> beam.ParDo(_Rows(table, _Decode(input_format, header), names)))
        (parsed | f"Keys{table}" >> beam.Map(lambda r: json.dumps([r[0], r[1]]))
         | f"WriteKeys{table}" >> beam.io.WriteToText(os.path.join(scratch, f"keys-{table}"), file_name_suffix=".jsonl"))
        rows.append(parsed)
    known = set(cache)
    (rows | "AllTexts" >> beam.Flatten()
     | "ByHash" >> beam.Map(lambda r: (r[1], r[2]))
     | "NotCached" >> beam.Filter(lambda pair, known: pair[0] not in known, known)
     | "Encode" >> EncodeTexts(encoder_path, max_length, batch_size)
     | "WriteVectors" >> beam.io.WriteToText(os.path.join(scratch, "vectors"), file_name_suffix=".jsonl"))
    result = p.run()
    result.wait_until_finish()
    counters = read_counters(result, NAMESPACE)

    new = read_vectors(os.path.join(scratch, "vectors*.jsonl"))
    if cached_dir and new:
        tf.io.gfile.makedirs(cached_dir)
        _write_npz(os.path.join(cached_dir, f"vectors-{uuid.uuid4().hex}.npz"), hashes=np.array(sorted(new)),
                   vectors=np.stack([new[h] for h in sorted(new)]))
    vectors = {**cache, **new}
    dimension = len(next(iter(vectors.values()))) if vectors else 0
    tables, keys_by_table = {}, {}
    for table in sorted(fields):
        if table == REVIEWS:
            keys_by_table[table], tables[table] = _write_reviews(scratch, out_uri, vectors, dimension, fields[table],
                                                                 counters)
            continue
        keys = {}
        for path in tf.io.gfile.glob(os.path.join(scratch, f"keys-{table}*.jsonl")):
            with tf.io.gfile.GFile(path) as f:
                keys.update(map(json.loads, f))  # a duplicate id keeps one row (LogExampleGen dead-letters the rest)
        ids, keys_by_table[table] = sorted(keys), keys
        _write_npz(os.path.join(out_uri, f"{table}.npz"), ids=np.array(ids, dtype=str),
                   vectors=np.stack([vectors[keys[i]] for i in ids]) if ids else np.zeros((0, dimension), np.float32))
        tables[table] = {"fields": fields[table], "with_text": len(ids),
                         **{kind: counters.get(f"{table}.{kind}", 0) for kind in ("missing", "not_text", "unreadable",
                                                                                   "no_id")}}
    tf.io.gfile.rmtree(scratch)
    used = {h for keys in keys_by_table.values() for h in keys.values() if h}
    return {"encoder_checksum": checksum, "dimension": dimension, "max_length": max_length, "tables": tables,
            "texts": len(used), "texts_encoded": len(new), "texts_from_cache": len(used & set(cache)),
            "seconds": round(time.time() - started, 1)}


def _write_reviews(scratch: str, out_uri: str, vectors: Dict[str, np.ndarray], dimension: int, fields, counters):
    """`reviews.npz` from the scratch keys; returns ({review id: text hash}, the reviews' counts)."""
    rows = []
    for path in tf.io.gfile.glob(os.path.join(scratch, f"keys-{REVIEWS}*.jsonl")):
        with tf.io.gfile.GFile(path) as f:
            rows.extend(map(json.loads, f))
    rows.sort(key=lambda r: (r[1], r[2], r[0]))  # by item, then time: LogExampleGen counts them in this order
    _write_npz(os.path.join(out_uri, f"{REVIEWS}.npz"), ids=np.array([r[0] for r in rows], dtype=str),
               items=np.array([r[1] for r in rows], dtype=str), ts=np.array([r[2] for r in rows], np.int64),
               has_text=np.array([bool(r[3]) for r in rows], bool),
               vectors=np.stack([vectors[r[3]] if r[3] else np.zeros(dimension, np.float32) for r in rows])
               if rows else np.zeros((0, dimension), np.float32))
    counts = {"fields": fields, "with_text": sum(bool(r[3]) for r in rows),
              **{kind: counters.get(f"{REVIEWS}.{kind}", 0) for kind in ("missing", "not_text")}}
    return {r[0]: r[3] for r in rows}, counts


class Executor(base_beam_executor.BaseBeamExecutor):
    """Runs `embed_tables` on Beam and records its counts on the artifact."""

    def Do(self, input_dict, output_dict, exec_properties) -> None:
        embeddings = artifact_utils.get_single_instance(output_dict["embeddings"])
        meta = embed_tables(self._make_beam_pipeline, exec_properties["input_base"], exec_properties["input_format"],
                            json.loads(exec_properties["fields"]), embeddings.uri,
                            exec_properties.get("encoder_path") or None, exec_properties["max_length"],
                            exec_properties["batch_size"], exec_properties.get("cache_dir") or None,
                            artifact_utils.get_single_instance(input_dict["reviews"]).uri
                            if input_dict.get("reviews") else None)
        with tf.io.gfile.GFile(os.path.join(embeddings.uri, META_FILE), "w") as f:
            f.write(json.dumps(meta, indent=1))
        logging.info("%sTextEmbedder: %d distinct texts, %d encoded, %d from the cache, in %.0fs", PROGRESS,
                     meta["texts"], meta["texts_encoded"], meta["texts_from_cache"], meta["seconds"])
        for name in ("texts", "texts_encoded", "texts_from_cache", "dimension"):
            embeddings.set_int_custom_property(name, meta[name])
        embeddings.set_string_custom_property("encoder_checksum", meta["encoder_checksum"])


class TextEmbedder(base_beam_component.BaseBeamComponent):
    """Encodes the side tables' text fields into vectors by id, with a cache across runs."""

    SPEC_CLASS = TextEmbedderSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)

    def __init__(self, input_base: str, fields: Dict[str, List[str]], input_format: str = "jsonl",
                 encoder_path: str = "", max_length: int = 64, batch_size: int = 64, cache_dir: str = "",
                 fingerprint=None, reviews=None):
        """`fingerprint`: as LogExampleGen's (the input files now, or a compiled pipeline's parameter);
        `reviews`: LogExampleGen's reviews channel, when `fields` has reviews."""
        super().__init__(spec=TextEmbedderSpec(
            input_base=input_base, input_format=input_format, fields=json.dumps(fields, sort_keys=True),
            encoder_path=encoder_path or None, max_length=max_length, batch_size=batch_size,
            cache_dir=cache_dir or None,
            input_fingerprint=input_fingerprint(input_base) if fingerprint is None else fingerprint,
            reviews=reviews, embeddings=types.Channel(type=TextEmbeddings)))
