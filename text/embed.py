"""`mtrec embed`: one text field of a JSONL or CSV file -> its rows with the encoder's vector.

Rows come out in input order, each with its other fields and `embedding` (the encoder's 384
floats, before any reduction). A row without the field (absent, JSON null, or a CSV NA cell:
empty, `NA`, `NULL`, ..., `mtrec.data.missing.NA_CELLS`) is a missing value, as everywhere in
mtrec: written with `"embedding": null`. A row that cannot be read (bad JSON, not an object) or
whose field is not a string is counted and kept in the dead-letter file beside the output
(`OUT.dead_letter.jsonl`: line, reason, raw line), not written. A text seen before is not
encoded again.

The encoding is a Beam job, the TextEmbedder's transform (`EncodeTexts`: RunInference, each
distinct text once), on DirectRunner here or any runner `beam_args` name (Dataflow workers encode
in parallel); the command reads the rows, keeps their order and writes them.
"""
from __future__ import annotations

import collections
import csv
import json
import os
import tempfile
import time
import uuid
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import apache_beam as beam
import numpy as np
import tensorflow as tf
from apache_beam.options.pipeline_options import PipelineOptions

from mtrec.components.text_embedder import EncodeTexts, read_vectors, text_hash
from mtrec.data.missing import NA_CELLS
from mtrec.text.minilm import DEFAULT_MAX_LENGTH, MINILM_SHA256, check_files, default_encoder_path

EMBEDDING = "embedding"
DIRECT = ["--direct_running_mode=in_memory"]  # Beam's DirectRunner in this process, the default


def dead_letter_path(out: str) -> str:
    root, _ = os.path.splitext(out)
    return f"{root}.dead_letter.jsonl"


def _records(path: str) -> Iterator[Tuple[int, str, Optional[dict], Optional[Tuple[str, str]]]]:
    """(line number, raw line, row, problem) for every row of a JSONL or CSV file; a row that
    cannot be read is None, with its problem as (reason, detail)."""
    with open(path, newline="" if path.endswith(".csv") else None, encoding="utf-8") as f:
        if path.endswith(".csv"):
            reader = csv.DictReader(f)
            for row in reader:  # NA cells are no value, as in the tables mtrec reads
                yield reader.line_num, json.dumps(row), {k: (None if v in NA_CELLS else v) for k, v in row.items()}, None
            return
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            raw = line.rstrip("\n")
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                yield number, raw, None, ("bad JSON", e.msg)
                continue
            yield (number, raw, row, None) if isinstance(row, dict) else \
                (number, raw, None, ("not a JSON object", type(row).__name__))


def embed_file(input_path: str, field: str, out: str, max_length: int = DEFAULT_MAX_LENGTH, batch_size: int = 64,
               encoder_path: Optional[str] = None, progress: Callable[[str], None] = print,
               beam_args: Optional[List[str]] = None) -> Dict:
    """Writes `out` (and its dead letters); returns the counts: rows, embedded, missing, distinct
    texts encoded, dead_letter {total, by_reason}, seconds."""
    if not os.path.isfile(input_path):
        raise FileNotFoundError(f"no input file {input_path}")
    records = list(_records(input_path))
    readable = [row for _, _, row, _ in records if row is not None]
    if readable and not any(field in row for row in readable):
        seen = sorted({k for row in readable[:1000] for k in row})
        raise ValueError(f"no row of {input_path} has the field {field!r}; fields seen: {seen}")
    rows, dead, reasons = [], [], collections.Counter()
    for number, raw, row, problem in records:
        if row is not None and row.get(field) is not None and not isinstance(row[field], str):
            problem = ("not text", f"field {field!r} is {type(row[field]).__name__}")
        if problem:
            reasons[problem[0]] += 1
            dead.append({"line": number, "reason": ": ".join(problem), "raw": raw})
        else:
            rows.append(row)

    checksum = check_files(encoder_path or default_encoder_path(), None if encoder_path else MINILM_SHA256)
    texts = list(dict.fromkeys(row[field] for row in rows if row.get(field) is not None))
    progress(f"embed: encoding {len(texts)} distinct texts on Beam ({' '.join(beam_args or DIRECT)})")
    started = time.time()
    by_hash = encode_on_beam(texts, os.path.dirname(os.path.abspath(out)), encoder_path, max_length, batch_size,
                             beam_args or DIRECT) if texts else {}
    seconds = time.time() - started
    by_text = {text: by_hash[text_hash(text)] for text in texts}

    counts = {"rows": len(records), "embedded": 0, "missing": 0, "texts_encoded": len(texts)}
    with open(out, "w", encoding="utf-8") as f:
        for row in rows:
            text = row.get(field)
            counts["embedded" if text is not None else "missing"] += 1
            vector = [round(float(x), 7) for x in by_text[text]] if text is not None else None
            f.write(json.dumps({**row, EMBEDDING: vector}) + "\n")
    with open(dead_letter_path(out), "w", encoding="utf-8") as f:
        for record in dead:
            f.write(json.dumps(record) + "\n")
    counts.update(dead_letter={"total": len(dead), "by_reason": dict(reasons)}, seconds=round(seconds, 2),
                  texts_per_s=round(len(texts) / seconds, 1) if seconds else None, encoder_sha256=checksum)
    return counts


def encode_on_beam(texts: List[str], scratch_parent: str, encoder_path: Optional[str], max_length: int,
                   batch_size: int, beam_args: List[str]) -> Dict[str, np.ndarray]:
    """{text sha256: vector} of `texts`, encoded by the TextEmbedder's Beam transform (RunInference,
    each text once) on the runner `beam_args` choose; the launcher keeps the rows and their order."""
    options = PipelineOptions(beam_args)
    # remote workers write where the runner's temp_location says (storage they share), else beside OUT
    shared = options.get_all_options().get("temp_location")
    scratch = (os.path.join(shared, f"embed-{uuid.uuid4().hex}") if shared
               else tempfile.mkdtemp(prefix=".embed-", dir=scratch_parent))
    try:
        with beam.Pipeline(options=options) as p:
            (p | "Texts" >> beam.Create([(text_hash(t), t) for t in texts])
             | "Encode" >> EncodeTexts(encoder_path, max_length, batch_size)
             | "Write" >> beam.io.WriteToText(os.path.join(scratch, "vectors"), file_name_suffix=".jsonl"))
        return read_vectors(os.path.join(scratch, "vectors*.jsonl"))
    finally:
        if tf.io.gfile.exists(scratch):
            tf.io.gfile.rmtree(scratch)
