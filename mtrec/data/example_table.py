"""A ready example table from a synthetic log, with missing cells, as teams bring them.

Joins the log in plain Python with the same rules as LogExampleGen (one row per impression,
label columns), then blanks cells at random: `missing_rate` of each column in `columns` and
`label_missing_rate` of each label in `labels` (rows whose label was not recorded). The
generator's oracle stays valid: rows keep their impression ids.
"""
from __future__ import annotations

import collections
import csv
import json
import os
import random
from typing import Dict, Sequence

from mtrec.components import events as ev

MISSING_COLUMNS = ("device", "page", "category", "region", "position", "price", "user_tenure_days")
MISSING_LABELS = ("like", "dwell")


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
                        labels: Sequence[str] = MISSING_LABELS, seed: int = 0) -> Dict[str, int]:
    """Writes the table; returns {column: cells blanked}."""
    rows = joined_rows(logs_dir)
    rng = random.Random(seed)
    blanked = collections.Counter()
    for row in rows:
        for name, rate in [(c, missing_rate) for c in columns] + [(l, label_missing_rate) for l in labels]:
            if row.get(name) is not None and rng.random() < rate:
                row[name] = None
                blanked[name] += 1
    os.makedirs(os.path.dirname(os.path.abspath(out_csv)), exist_ok=True)
    with open(out_csv, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[k for k in rows[0] if k != "lines"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return dict(blanked)
