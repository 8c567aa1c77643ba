"""LogExampleGen: an ExampleGen-style TFX component that joins raw event logs into tf.Examples.

Reads `events*` (JSONL or CSV, optionally gzipped), `items*` and `users*` from `input_base`, joins
every impression with its responses and its user and item rows, and writes one tf.Example per
impression into the train and eval splits of an `Examples` artifact, as ExampleGen does. Every
refused line goes to the `dead_letter` artifact with its reason, counted in Beam metrics
(namespace `mtrec.ingest`) and in the artifact's `counts.json`.

Daily logs are spans: with `input_config` patterns under `{YYYY}-{MM}-{DD}/` folders and a
`range_config`, TFX's ExampleGen driver picks the span (the newest, or the one asked for),
fingerprints its files for the cache and records `span` on the Examples, as FileBasedExampleGen's
does; where no driver runs (Kubeflow), the executor resolves the span the same way.

Spec, component and executor live together: the executor is the only implementation of the spec.
"""
from __future__ import annotations

import csv
import functools
import gzip
import hashlib
import json
import os
from typing import Any, Dict, List

import apache_beam as beam
import pyarrow as pa
from absl import logging
import tensorflow as tf
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter
from tfx import types
from tfx.components.example_gen import driver, utils
from tfx.dsl.components.base import base_beam_component, base_beam_executor, executor_spec
from tfx.proto import example_gen_pb2, range_config_pb2
from tfx.types import artifact_utils, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter
from tfx.utils import proto_utils
from tfx_bsl.coders import example_coder

from mtrec.components import events as ev
from mtrec.components.spans import LATEST, span_number
from mtrec.terminal import PROGRESS
from mtrec.transformed import REVIEWS_BEFORE

NAMESPACE = "mtrec.ingest"
SPLITS = ("train", "eval", "test")  # test only when test_days / test_percent ask for it
TABLES = ("events", "items", "users")
REVIEWS_FILE = "reviews"  # reviews-*.jsonl in the Reviews artifact


class DeadLetter(types.Artifact):
    """Refused input lines as JSONL (`dead_letter-*.jsonl`: source, reason, detail, line) and `counts.json`."""

    TYPE_NAME = "mtrec.DeadLetter"


class Reviews(types.Artifact):
    """The reviews joined into examples, as JSONL (`reviews-*.jsonl`: impression_id, item_id, ts, text)."""

    TYPE_NAME = "mtrec.Reviews"


class LogExampleGenSpec(types.ComponentSpec):
    PARAMETERS = {
        "input_base": ExecutionParameter(type=str),
        "input_format": ExecutionParameter(type=str),
        "split": ExecutionParameter(type=str),
        "eval_days": ExecutionParameter(type=int),
        "eval_percent": ExecutionParameter(type=int),
        "split_seed": ExecutionParameter(type=int, optional=True),
        "test_days": ExecutionParameter(type=int, optional=True),
        "test_percent": ExecutionParameter(type=int, optional=True),
        # Changes when the input files change, so TFX's cache never serves examples of older logs
        # (the driver replaces it with its own fingerprint of the span's files where it runs).
        "input_fingerprint": ExecutionParameter(type=str),
        # One split per table (`input_patterns`); a date pattern makes day folders spans.
        "input_config": ExecutionParameter(type=example_gen_pb2.Input),
        "range_config": ExecutionParameter(type=range_config_pb2.RangeConfig, optional=True),
        # Where no driver runs (Kubeflow): the day to ingest, a run-time parameter; `latest` or unset: the newest.
        "span_date": ExecutionParameter(type=str, optional=True),
    }
    INPUTS = {}
    OUTPUTS = {
        "examples": ChannelParameter(type=standard_artifacts.Examples),
        "dead_letter": ChannelParameter(type=DeadLetter),
        "reviews": ChannelParameter(type=Reviews),
    }


def input_patterns(input_format: str, span_pattern: str = "") -> example_gen_pb2.Input:
    """ExampleGen's input config for the three tables, under `span_pattern` folders (e.g.
    `{YYYY}-{MM}-{DD}`) or directly in the input base."""
    return example_gen_pb2.Input(splits=[
        example_gen_pb2.Input.Split(name=t, pattern=os.path.join(span_pattern, f"{t}*.{input_format}*")) for t in TABLES])


def span_range(span: int | None) -> range_config_pb2.RangeConfig | None:
    """The RangeConfig that ingests span `span` (None: the newest)."""
    if span is None:
        return None
    return range_config_pb2.RangeConfig(static_range=range_config_pb2.StaticRange(
        start_span_number=span, end_span_number=span))


def resolve_input(exec_properties: Dict[str, Any]) -> tuple:
    """(folder of the span's tables, span): the driver's resolution, or the same done here."""
    config = example_gen_pb2.Input()
    proto_utils.json_to_proto(exec_properties["input_config"], config)
    span = exec_properties.get(utils.SPAN_PROPERTY_NAME)
    if span is None:  # no driver ran (Kubeflow): resolve as it would
        range_config = None
        if exec_properties.get("range_config"):
            range_config = proto_utils.json_to_proto(exec_properties["range_config"], range_config_pb2.RangeConfig())
        elif exec_properties.get("span_date") not in (None, "", LATEST):
            range_config = span_range(span_number(exec_properties["span_date"]))
        _, span, _ = utils.calculate_splits_fingerprint_span_and_version(
            exec_properties["input_base"], config.splits, range_config)
    folder = os.path.dirname(config.splits[0].pattern)
    return os.path.join(exec_properties["input_base"], folder) if folder else exec_properties["input_base"], span


def input_fingerprint(input_base: str) -> str:
    """Names, sizes and modification times of the input files: cheap, and changes with the data."""
    files = sorted(tf.io.gfile.glob(os.path.join(input_base, "*")))
    stamp = [(os.path.basename(f), s.length, s.mtime_nsec) for f, s in zip(files, map(tf.io.gfile.stat, files))
             if not s.is_directory]
    return hashlib.sha256(json.dumps(stamp).encode()).hexdigest()[:16]


def input_files(input_base: str, table: str, input_format: str) -> str:
    """The glob pattern of one table's files; raises FileNotFoundError naming it when nothing matches."""
    pattern = os.path.join(input_base, f"{table}*.{input_format}*")
    if not tf.io.gfile.glob(pattern):
        raise FileNotFoundError(f"LogExampleGen: no {table} file matches {pattern}")
    return pattern


def _csv_header(pattern: str) -> List[str]:
    path = sorted(tf.io.gfile.glob(pattern))[0]
    with tf.io.gfile.GFile(path, "rb") as raw, (gzip.open(raw) if path.endswith(".gz") else raw) as f:
        return next(csv.reader([f.readline().decode()]))


@functools.lru_cache(maxsize=None)
def _counter(name: str):
    """This module's Beam counter `name`, made once: making one costs three times counting with it
    (6.5 against 2.2 us), and the main job counts 400,000 times. Safe to share: it finds the running
    bundle's metrics when it counts."""
    return Metrics.counter(NAMESPACE, name)


def _refuse(source: str, reason: str, detail: str, line: str) -> beam.pvalue.TaggedOutput:
    """Counts a refused line by reason and routes it, untouched, to the dead-letter output."""
    _counter(f"dead_letter.{reason}").inc()
    return beam.pvalue.TaggedOutput("dead", ev.dead_letter(source, reason, detail, line))


class _Decode:
    """Line -> dict for the configured format (picklable for Beam)."""

    def __init__(self, input_format: str, header: List[str] | None):
        self.input_format, self.header = input_format, header

    def __call__(self, line: str) -> dict:
        if self.input_format == "csv":
            return ev.decode_csv(line, self.header)
        return ev.decode_json(line)


class _Parser:
    """Line -> validated record of one table (picklable for Beam)."""

    def __init__(self, decode: _Decode, parse):
        self.decode, self.parse = decode, parse

    def __call__(self, line: str) -> dict:
        return self.parse(self.decode(line), self.decode.input_format == "csv")


class _KeyLines(beam.DoFn):
    """Validates lines; good ones go out as (key, line), bad ones to `dead`.

    Only the line goes through the group: a refusal after it (a duplicate, an orphan response)
    needs the line untouched, and a str is the smallest payload the in-memory runner can hold (157
    bytes an event encoded, 269 with its parsed record beside it). It is parsed again after."""

    def __init__(self, source: str, parser: _Parser, key_field: str):
        self.source, self.parser, self.key_field = source, parser, key_field
        self.lines = _counter(f"input_lines.{source}")

    def process(self, line: str):
        self.lines.inc()
        try:
            record = self.parser(line)
        except ev.BadRecord as bad:
            yield _refuse(self.source, bad.reason, bad.detail, line)
            return
        yield record[self.key_field], line


def _first_row(source: str, parser: _Parser):
    """Keeps the first row of a side-table id; later rows are dead-lettered as duplicates."""

    def fn(keyed):
        key, lines = keyed
        lines = sorted(lines)
        for line in lines[1:]:
            yield _refuse(source, "duplicate_record", f"second row for {key}", line)
        _counter("accepted_lines").inc()
        yield key, parser(lines[0])

    return fn


class _Join(beam.DoFn):
    def __init__(self, parser: _Parser):
        self.parser = parser

    def process(self, keyed, users, items):
        _, lines = keyed
        example, refused = ev.join_impression([(self.parser(line), line) for line in lines], users, items)
        for reason, detail, line in refused:
            yield _refuse("events", reason, detail, line)
        if example is not None:
            _counter("accepted_lines").inc(example["lines"])
            yield example


def review_row(example: Dict[str, Any]) -> List[Dict[str, Any]]:
    """The example's review as a row of the reviews artifact (none if it has no review)."""
    if example["review"] is None:
        return []
    _counter("reviews").inc()
    ts, text = example["review"]
    return [{"impression_id": example["impression_id"], "item_id": example["item_id"], "ts": ts, "text": text}]


def _pack(example: Dict[str, Any]) -> tuple:
    """The example's features and labels as a tuple (ev.EXAMPLE_FIELDS): what the runner holds of
    every example while the reviews of all are counted, less than half a dict's encoded size."""
    return tuple(example[name] for name in ev.EXAMPLE_FIELDS)


def _unpack_with_reviews_before(values: tuple, review_times) -> Dict[str, Any]:
    example = dict(zip(ev.EXAMPLE_FIELDS, values))
    example[REVIEWS_BEFORE] = ev.reviews_before(example, review_times)
    return example


def _kind(value: Any) -> type:
    """A value's tf.Example list: bytes for a str, float for a float, int64 for anything else."""
    return str if isinstance(value, str) else float if isinstance(value, float) else int


_LISTS = {str: pa.large_list(pa.large_binary()), float: pa.large_list(pa.float32()),
          int: pa.large_list(pa.int64())}
_ENCODER = example_coder.RecordBatchToExamplesEncoder()
EXAMPLES_PER_BATCH = 512


def serialized_examples(examples: List[Dict[str, Any]]) -> List[bytes]:
    """Serialized tf.Examples of a batch of examples, one feature per field; a field whose value is
    None (an optional field the log did not have) is left out.

    Built column by column by tfx_bsl's encoder (C++): 4.9-5.7 s for the main job's 200,000
    examples against 16.2-19.1 s filling a tf.Example per example from Python, measured. The
    encoder writes a null as a feature of no kind, which readers do not take for absent, so the
    examples go to it grouped by which fields they have."""
    groups: Dict[tuple, list] = {}
    for example in examples:
        fields = tuple((name, _kind(value)) for name, value in example.items()
                       if value is not None and name not in ev.NON_FEATURES)
        groups.setdefault(fields, []).append(example)
    serialized = []
    for fields, rows in groups.items():
        columns = [pa.array([[row[name] if kind is not int else int(row[name])] for row in rows], _LISTS[kind])
                   for name, kind in fields]
        serialized += _ENCODER.encode(pa.RecordBatch.from_arrays(columns, [name for name, _ in fields]))
    return serialized


def _hash_bucket(key: str, buckets: int) -> int:
    """A stable bucket of `key` in 0..buckets-1 (the same on every worker and run)."""
    return int(hashlib.md5(key.encode()).hexdigest()[:8], 16) % buckets


def hash_split(impression_id: str, eval_percent: int, seed: int = 0, test_percent: int = 0) -> int:
    """1 (eval) for `eval_percent`% of impression ids by hash, 2 (test) for the next `test_percent`%,
    else 0 (train); another `seed` draws another split."""
    bucket = _hash_bucket(f"{seed}/{impression_id}" if seed else impression_id, 100)
    return 1 if bucket < eval_percent else 2 if bucket < eval_percent + test_percent else 0


def _split_index(example, num_partitions, split, eval_days, eval_percent, last_day, split_seed=0, test_days=0,
                 test_percent=0):
    if split == "hash":
        index = hash_split(example["impression_id"], eval_percent, split_seed, test_percent)
    else:  # the last test_days days are test, the eval_days before them eval
        days_from_end = last_day - ev.day_of(example["ts"])
        index = 2 if days_from_end < test_days else 1 if days_from_end < test_days + eval_days else 0
    _counter(f"examples.{SPLITS[index]}").inc()
    return index


def split_names(split: str, test_days: int, test_percent: int) -> list:
    return list(SPLITS) if (test_days if split == "time" else test_percent) else list(SPLITS[:2])


# Impressions are grouped, joined and written in this many slices (by a hash of their id), each a
# branch of the pipeline: Beam's in-memory runner hands a stage its whole input at once, in several
# copies, so a slice's stages hold a share of the log (bench/README, Pipeline scale).
SLICES = 8


def build_ingestion(p: beam.Pipeline, input_base: str, input_format: str, split: str, eval_days: int,
                    eval_percent: int, examples_uri: str, dead_letter_uri: str, split_seed: int = 0,
                    test_days: int = 0, test_percent: int = 0, reviews_uri: str = "") -> None:
    """Adds read, parse, join, split and write steps to `p`."""
    header = {}
    if input_format == "csv":
        header = {t: _csv_header(input_files(input_base, t, "csv")) for t in TABLES}
    dead = []

    def read(table, parser, key_field):
        pattern = input_files(input_base, table, input_format)
        lines = p | f"Read{table}" >> beam.io.ReadFromText(pattern, skip_header_lines=int(input_format == "csv"))
        keyed = (lines | f"Parse{table}" >> beam.ParDo(_KeyLines(table, parser, key_field))
                 .with_outputs("dead", main="ok"))
        dead.append(keyed.dead)
        return keyed.ok

    def parser(table, parse):
        return _Parser(_Decode(input_format, header.get(table)), parse)

    def table(name, parse, key_field):
        rows_parser = parser(name, parse)
        rows = (read(name, rows_parser, key_field) | f"Group{name}" >> beam.GroupByKey()
                | f"Dedup{name}" >> beam.FlatMap(_first_row(name, rows_parser)).with_outputs("dead", main="ok"))
        dead.append(rows.dead)
        return beam.pvalue.AsDict(rows.ok)

    users = table("users", ev.parse_user, "user_id")
    items = table("items", ev.parse_item, "item_id")
    events_parser = parser("events", ev.parse_event)
    events = read("events", events_parser, "impression_id")
    # One branch per slice (SLICES), written as it is joined: no shuffle before the write (the
    # Trainer shuffles; a Reshuffle held every serialized example at once).
    slices = events | "Slice" >> beam.Partition(lambda keyed, n: _hash_bucket(keyed[0], n), SLICES)
    joined = []
    for k, events_k in enumerate(slices):
        part = (events_k | f"GroupByImpression{k}" >> beam.GroupByKey()
                | f"Join{k}" >> beam.ParDo(_Join(events_parser), users=users, items=items)
                .with_outputs("dead", main="ok"))
        dead.append(part.dead)
        joined.append(part.ok)
    reviews = ([j | f"Reviews{k}" >> beam.FlatMap(review_row) for k, j in enumerate(joined)]
               | "AllReviews" >> beam.Flatten())
    review_times = beam.pvalue.AsDict(
        reviews | "ReviewTimes" >> beam.Map(lambda r: (r["item_id"], r["ts"]))
        | "ByItem" >> beam.GroupByKey() | "Sorted" >> beam.MapTuple(lambda item, ts: (item, sorted(ts))))
    if reviews_uri:
        (reviews | "ReviewLines" >> beam.Map(json.dumps)
         | "WriteReviews" >> beam.io.WriteToText(os.path.join(reviews_uri, REVIEWS_FILE), file_name_suffix=".jsonl"))

    last_day = 0
    if split == "time":
        last_day = beam.pvalue.AsSingleton(
            [j | f"Day{k}" >> beam.Map(lambda e: ev.day_of(e["ts"])) for k, j in enumerate(joined)]
            | "Days" >> beam.Flatten() | "LastDay" >> beam.CombineGlobally(max).without_defaults())
    for k, joined_k in enumerate(joined):
        parts = (joined_k | f"Pack{k}" >> beam.Map(_pack)
                 | f"ReviewsBefore{k}" >> beam.Map(_unpack_with_reviews_before, review_times)
                 | f"Split{k}" >> beam.Partition(_split_index, len(SPLITS), split, eval_days, eval_percent, last_day,
                                                 split_seed, test_days, test_percent))
        for name, part in zip(split_names(split, test_days, test_percent), parts):
            (part | f"Batch{name}{k}" >> beam.BatchElements(min_batch_size=EXAMPLES_PER_BATCH,
                                                                max_batch_size=EXAMPLES_PER_BATCH)
             | f"ToExamples{name}{k}" >> beam.FlatMap(serialized_examples)
             | f"Write{name}{k}" >> beam.io.WriteToTFRecord(
                 os.path.join(examples_uri, f"Split-{name}", f"data_tfrecord-{k}"), file_name_suffix=".gz"))
    (dead | "AllDead" >> beam.Flatten()
     | "WriteDead" >> beam.io.WriteToText(os.path.join(dead_letter_uri, "dead_letter"), file_name_suffix=".jsonl"))


def read_counters(result, namespace: str = NAMESPACE) -> Dict[str, int]:
    """A finished Beam pipeline's counters in `namespace`, by name."""
    counters = result.metrics().query(MetricsFilter().with_namespace(namespace))["counters"]
    out: Dict[str, int] = {}
    for c in counters:
        value = c.committed if c.committed is not None else c.attempted
        out[c.key.metric.name] = out.get(c.key.metric.name, 0) + int(value)
    return out


def summarize_counts(counters: Dict[str, int]) -> Dict[str, Any]:
    """Counts for the run summary: input lines = accepted lines + dead-letter lines, exactly.

    Accepted lines are event lines joined into an example and side-table rows kept for the join.
    """
    def by_prefix(prefix):
        return {k[len(prefix):]: v for k, v in sorted(counters.items()) if k.startswith(prefix)}

    by_reason = by_prefix("dead_letter.")
    by_source = by_prefix("input_lines.")
    return {
        "input_lines": sum(by_source.values()),
        "input_lines_by_source": by_source,
        "accepted_lines": counters.get("accepted_lines", 0),
        "examples": {s: counters.get(f"examples.{s}", 0) for s in SPLITS if f"examples.{s}" in counters},
        "reviews": counters.get("reviews", 0),
        "dead_letter": {"total": sum(by_reason.values()), "by_reason": by_reason},
    }


class Executor(base_beam_executor.BaseBeamExecutor):
    """Runs the ingestion Beam pipeline.

    Inputs: none (raw files under `input_base`).
    Outputs: `examples` (Split-train, Split-eval and optionally Split-test; gzipped TFRecords of tf.Example),
      `dead_letter` (refused lines and `counts.json`) and `reviews` (the joined reviews).
    Properties: input_base, input_format (jsonl|csv), split (time|hash), eval_days, eval_percent,
      split_seed (hash split only), test_days / test_percent (optional test split), input_fingerprint.
    """

    def Do(self, input_dict, output_dict, exec_properties) -> None:
        examples = artifact_utils.get_single_instance(output_dict["examples"])
        dead_letter = artifact_utils.get_single_instance(output_dict["dead_letter"])
        reviews = artifact_utils.get_single_instance(output_dict["reviews"])
        test_days, test_percent = exec_properties.get("test_days") or 0, exec_properties.get("test_percent") or 0
        examples.split_names = artifact_utils.encode_split_names(
            split_names(exec_properties["split"], test_days, test_percent))
        tables, span = resolve_input(exec_properties)
        examples.span = span  # the property too, which StatisticsGen copies onto its statistics
        examples.set_int_custom_property(utils.SPAN_PROPERTY_NAME, span)
        logging.info("%singesting %s (span %d)", PROGRESS, tables, span)
        pipeline = self._make_beam_pipeline()
        build_ingestion(pipeline, tables, exec_properties["input_format"],
                        exec_properties["split"], exec_properties["eval_days"], exec_properties["eval_percent"],
                        examples.uri, dead_letter.uri, exec_properties.get("split_seed") or 0, test_days, test_percent,
                        reviews.uri)
        result = pipeline.run()
        result.wait_until_finish()
        counts = summarize_counts(read_counters(result))
        logging.info("%sread %d lines: %s examples, %d dead-lettered", PROGRESS, counts["input_lines"],
                     counts["examples"], counts["dead_letter"]["total"])
        with tf.io.gfile.GFile(os.path.join(dead_letter.uri, "counts.json"), "w") as f:
            f.write(json.dumps(counts, indent=1))
        dead_letter.set_int_custom_property("total", counts["dead_letter"]["total"])
        dead_letter.set_int_custom_property("input_lines", counts["input_lines"])
        for split, n in counts["examples"].items():
            examples.set_int_custom_property(f"examples_{split}", n)
        reviews.set_int_custom_property("reviews", counts["reviews"])


class LogExampleGen(base_beam_component.BaseBeamComponent):
    """Joins raw interaction logs into train/eval (and test) tf.Examples, with a dead-letter output."""

    SPEC_CLASS = LogExampleGenSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)
    DRIVER_CLASS = driver.FileBasedDriver  # FileBasedExampleGen's: span, fingerprint, both recorded

    def __init__(self, input_base: str, input_format: str = "jsonl", split: str = "time", eval_days: int = 1,
                 eval_percent: int = 20, split_seed: int = 0, test_days: int = 0, test_percent: int = 0,
                 fingerprint=None, span_pattern: str = "", span=None, span_date=None):
        """`fingerprint` defaults to `input_fingerprint(input_base)`, taken now; a compiled
        (Kubeflow) pipeline passes a run-time parameter instead, as its files are read later.
        `span_pattern` (e.g. `{YYYY}-{MM}-{DD}`) reads the tables from span folders under
        `input_base`: span number `span`, or the newest when None; `span_date` (a date, or a
        run-time parameter) says which where no driver resolves it (Kubeflow)."""
        if input_format not in ("jsonl", "csv"):
            raise ValueError(f"LogExampleGen: input_format={input_format!r}; expected jsonl or csv")
        super().__init__(spec=LogExampleGenSpec(
            input_base=input_base, input_format=input_format, split=split, eval_days=eval_days,
            eval_percent=eval_percent, split_seed=split_seed,
            # only when asked for, so the cache key of a run without a test split stays as it was
            test_days=test_days or None, test_percent=test_percent or None,
            input_fingerprint=input_fingerprint(input_base) if fingerprint is None else fingerprint,
            input_config=input_patterns(input_format, span_pattern), range_config=span_range(span), span_date=span_date,
            examples=types.Channel(type=standard_artifacts.Examples),
            dead_letter=types.Channel(type=DeadLetter), reviews=types.Channel(type=Reviews)))
