"""Drafts the `data`/`features`/`tasks` part of a config from a ready example table, so a user
starts from something that runs (`mtrec config --from-table FILE`).

Reads the header and up to `sample_rows` rows (CSV or Parquet) and picks a treatment per column:
labels (named with `--labels`, or 0/1 columns with a label-like name) become binary tasks, other
numeric labels regression; strings become categorical, ids (`*_id`) or, with many distinct
values (more than half the rows, or 10,000), hashed; ints with few distinct values categorical, others numeric; floats numeric; a
column unique in every row (a row id) is left out.
"""
from __future__ import annotations

import csv
import math
import os
from typing import Dict, List, Optional, Sequence

from mtrec.data.missing import NA_CELLS

LABEL_WORDS = ("click", "like", "purchase", "buy", "convert", "conversion", "label", "target", "rating",
               "dwell", "watch", "churn", "outcome", "y")
MAX_VOCABULARY = 10_000
MAX_INT_CATEGORIES = 50


def read_sample(path: str, sample_rows: int = 20_000) -> Dict[str, List]:
    """{column: values} of the first rows; an empty cell or null is None."""
    if path.endswith(".parquet"):
        import pyarrow.parquet as pq

        table = pq.read_table(path).slice(0, sample_rows)
        return {name: table.column(name).to_pylist() for name in table.column_names}
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        columns = {name: [] for name in header}
        for i, row in enumerate(reader):
            if i >= sample_rows:
                break
            for name, cell in zip(header, row):
                columns[name].append(None if cell in NA_CELLS else cell)
    return {name: [_number(v) for v in values] for name, values in columns.items()}


def _number(cell):
    if cell is None:
        return None
    for kind in (int, float):
        try:
            return kind(cell)
        except ValueError:
            pass
    return cell


def _kind(values: Sequence) -> str:
    present = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not present:
        return "empty"
    if all(isinstance(v, bool) or isinstance(v, int) for v in present):
        return "int"
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return "float"
    return "string"


def _is_label_name(name: str) -> bool:
    words = name.lower().replace("-", "_").split("_")  # `clicked`, `likes` count; `y` only alone
    return any(word in LABEL_WORDS or any(word.startswith(w) for w in LABEL_WORDS if len(w) > 2) for word in words)


def draft(path: str, labels: Optional[Sequence[str]] = None, sample_rows: int = 20_000) -> Dict:
    """The config overrides (YAML-shaped) for the table at `path`."""
    columns = read_sample(path, sample_rows)
    rows = max((len(v) for v in columns.values()), default=0)
    features = {"ids": [], "categorical": [], "numeric": [], "hashed": {}}
    tasks, left_out = [], []
    for name, values in columns.items():
        kind = _kind(values)
        present = [v for v in values if v is not None]
        distinct = len(set(present))
        binary = kind in ("int", "float") and set(present) <= {0, 1}
        if (labels is not None and name in labels) or (labels is None and binary and _is_label_name(name)):
            task = {"name": _identifier(name), "label": name, "type": "binary" if binary else "regression"}
            if kind == "string" and distinct == 2:  # yes/no, male/female: the later value means 1
                task.update(type="binary", positive=sorted(map(str, set(present)))[-1])
            elif kind == "string":
                left_out.append(f"{name} (a label of {distinct} string values: mtrec needs 0/1, two values or numbers)")
                continue
            tasks.append(task)
        elif kind == "empty" or distinct <= 1:
            left_out.append(f"{name} (no information: {distinct} distinct values)")
        elif kind == "string" and distinct == len(present) == rows:
            left_out.append(f"{name} (unique in every row: a row id)")
        elif kind == "string":
            if distinct > min(MAX_VOCABULARY, rows / 2):  # nearly one value per row: too many for a vocabulary
                features["hashed"][name] = 2 ** math.ceil(math.log2(2 * distinct))
            else:
                features["ids" if name.lower().endswith("id") else "categorical"].append(name)
        elif kind == "int" and distinct <= MAX_INT_CATEGORIES:
            features["categorical"].append(name)
        else:
            features["numeric"].append(name)
    fmt = "parquet" if path.endswith(".parquet") else "csv"
    return {"data": {"source": "examples", "path": os.path.dirname(os.path.abspath(path)),
                     "pattern": os.path.basename(path), "format": fmt, "split": "hash", "eval_percent": 20,
                     "test_percent": 10, "schema": "infer"},
            "features": features, "tasks": tasks, "slices": [], "training": _training(rows, sample_rows),
            "_left_out": left_out}


def _training(rows: int, sample_rows: int) -> Dict:
    """Small tables need small batches and patience to take enough steps; large ones the defaults."""
    if rows >= sample_rows:
        return {}
    return {"batch_size": max(16, min(256, 2 ** int(math.log2(max(rows, 1) // 20 or 1)))), "epochs": 100,
            "patience": 10}


def _identifier(name: str) -> str:
    text = "".join(c if c.isalnum() or c == "_" else "_" for c in name)
    return text if text and (text[0].isalpha() or text[0] == "_") else f"task_{text}"
