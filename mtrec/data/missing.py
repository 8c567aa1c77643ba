"""Missing values as real data has them, for tests and for trying the missing-value path.

`blank_log_fields` leaves optional fields out of a synthetic log's lines (impressions without a
device, items without a price, users without a region). `write_example_table` joins a log in
plain Python with LogExampleGen's rules into a ready example table (one row per impression, label
columns) and blanks cells at random: `missing_rate` of each column in `columns` and
`label_missing_rate` of each label in `labels` (rows whose label was not recorded).
"""
from __future__ import annotations

import collections
import csv
import json
import os
import random
from typing import Dict, Sequence

from mtrec.components import events as ev

# The cells tables use for "no value": pandas' `read_csv` defaults. CsvExampleGen and the config
# draft read them alike.
NA_CELLS = frozenset(("", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
                      "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"))
MISSING_COLUMNS = ("device", "page", "category", "region", "position", "price", "user_tenure_days")
MISSING_LABELS = ("like", "dwell")
LOG_FIELDS = {"events": ("device", "page", "position"), "items": ("category", "price"),
              "users": ("region", "signup_day")}


def blank_log_fields(logs_dir: str, rate: float = 0.06, seed: int = 0) -> Dict[str, int]:
    """Drops each optional field of `LOG_FIELDS` from `rate` of the JSONL lines that have it, in
    place; returns {field: lines changed}."""
    rng = random.Random(seed)
    blanked = collections.Counter()
    for table, fields in LOG_FIELDS.items():
        path = os.path.join(logs_dir, f"{table}.jsonl")
        with open(path) as f:
            records = [json.loads(line) for line in f]
        for record in records:
            for name in fields:
                if name in record and rng.random() < rate:
                    del record[name]
                    blanked[name] += 1
        with open(path, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in records)
    return dict(blanked)


def joined_rows(logs_dir: str) -> list:
    """One dict per impression of the log in `logs_dir` (events, items, users as JSONL)."""
    with open(os.path.join(logs_dir, "users.jsonl")) as f:
        users = {u["user_id"]: ev.parse_user(u) for u in map(json.loads, f)}
    with open(os.path.join(logs_dir, "items.jsonl")) as f:
        items = {i["item_id"]: ev.parse_item(i) for i in map(json.loads, f)}
    groups = collections.defaultdict(list)
    with open(os.path.join(logs_dir, "events.jsonl")) as f:
        for line in f:
            event = ev.parse_event(json.loads(line))
            groups[event["impression_id"]].append((event, line))
    return [row for row in (ev.join_impression(group, users, items)[0] for group in groups.values()) if row]


def write_example_table(logs_dir: str, out_csv: str, missing_rate: float = 0.08,
                        columns: Sequence[str] = MISSING_COLUMNS, label_missing_rate: float = 0.05,
                        labels: Sequence[str] = MISSING_LABELS, seed: int = 0, extra_columns: int = 0,
                        ) -> Dict[str, int]:
    """Writes the table; returns {column: cells blanked}. `extra_columns` adds that many columns
    of noise (`extra_<i>`, floats; every third one an int code 0..9), for a wide table; they are
    blanked at `missing_rate` too."""
    rows = joined_rows(logs_dir)
    rng = random.Random(seed)
    extras = [f"extra_{i}" for i in range(extra_columns)]
    for row in rows:
        for i, name in enumerate(extras):
            row[name] = rng.randrange(10) if i % 3 == 2 else round(rng.gauss(0.0, 1.0), 4)
    columns = list(columns) + extras
    blanked = collections.Counter()
    for row in rows:
        for name, rate in [(c, missing_rate) for c in columns] + [(l, label_missing_rate) for l in labels]:
            if row.get(name) is not None and rng.random() < rate:
                row[name] = None
                blanked[name] += 1
    os.makedirs(os.path.dirname(os.path.abspath(out_csv)), exist_ok=True)
    with open(out_csv, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[k for k in rows[0] if k not in ev.NON_FEATURES], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return dict(blanked)
