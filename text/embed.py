"""`mtrec embed`: one text field of a JSONL or CSV file -> its rows with the encoder's vector.

Rows come out in input order, each with its other fields and `embedding` (the encoder's 384
floats, before any reduction). A row without the field (absent, JSON null, or a CSV NA cell:
empty, `NA`, `NULL`, ..., `mtrec.data.missing.NA_CELLS`) is a missing value, as everywhere in
mtrec: written with `"embedding": null`. A row that cannot be read (bad JSON, not an object) or
whose field is not a string is counted and kept in the dead-letter file beside the output
(`OUT.dead_letter.jsonl`: line, reason, raw line), not written. A text seen before is not
encoded again.
"""
from __future__ import annotations

import collections
import csv
import json
import os
import time
from typing import Callable, Dict, Iterator, Optional, Tuple

from mtrec.data.missing import NA_CELLS
from mtrec.text.minilm import DEFAULT_MAX_LENGTH, SentenceEncoder

EMBEDDING = "embedding"
PROGRESS_EVERY_S = 10.0


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
               encoder_path: Optional[str] = None, progress: Callable[[str], None] = print) -> Dict:
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

    encoder = SentenceEncoder(encoder_path, max_length=max_length, batch_size=batch_size)
    texts = list(dict.fromkeys(row[field] for row in rows if row.get(field) is not None))
    started, last, vectors = time.time(), time.time(), []
    for batch in encoder.encode_batches(texts):
        vectors.extend(batch)
        if time.time() - last >= PROGRESS_EVERY_S:
            last = time.time()
            progress(f"embed: {len(vectors)}/{len(texts)} texts, {len(vectors) / (last - started):.0f} texts/s")
    seconds = time.time() - started
    by_text = dict(zip(texts, vectors))

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
                  texts_per_s=round(len(texts) / seconds, 1) if seconds else None, encoder_sha256=encoder.checksum)
    return counts
