"""Malformed lines of every kind ingestion must survive, mixed into a clean event log.

Used by the tests and by `mtrec generate-logs --malformed N` to show the dead-letter path: each
injected line is refused for exactly one known reason, so the expected counts are exact.
"""
from __future__ import annotations

import collections
import json
import random
from typing import Counter, List

KINDS = ("invalid_json", "missing_field", "wrong_type", "unknown_event_type", "bad_timestamp",
         "duplicate_event", "orphan_event")


def _bad_line(kind: str, impression: dict, k: int) -> str:
    imp_id, ts = impression["impression_id"], impression["ts"]
    if kind == "invalid_json":
        return json.dumps({"event": "click", "impression_id": imp_id, "ts": ts})[:-9]
    if kind == "missing_field":
        return json.dumps({"event": "click", "ts": ts})
    if kind == "wrong_type":
        return json.dumps(dict(impression, impression_id=f"bad-type-{k}", user_id=17))
    if kind == "unknown_event_type":
        return json.dumps({"event": "hover", "impression_id": imp_id, "ts": ts})
    if kind == "bad_timestamp":
        return json.dumps({"event": "click", "impression_id": imp_id, "ts": "yesterday at noon"})
    if kind == "duplicate_event":
        return json.dumps(impression)
    if kind == "orphan_event":
        return json.dumps({"event": "click", "impression_id": f"never-shown-{k}", "ts": ts})
    raise ValueError(f"unknown malformed kind {kind!r}; known: {KINDS}")


def inject(events_path: str, count: int, seed: int = 0) -> Counter[str]:
    """Inserts `count` malformed lines (kinds in turn) at random places; returns the count per kind."""
    rng = random.Random(seed)
    with open(events_path) as f:
        lines: List[str] = f.read().splitlines()
    impressions = [i for i, line in enumerate(lines) if '"event": "impression"' in line]
    if count > len(impressions):
        raise ValueError(f"{events_path}: {count} malformed lines asked for, only {len(impressions)} impressions")
    chosen = rng.sample(impressions, count)
    expected: Counter[str] = collections.Counter()
    bad = []
    for k, index in enumerate(chosen):
        kind = KINDS[k % len(KINDS)]
        bad.append(_bad_line(kind, json.loads(lines[index]), k))
        expected[kind] += 1
    for line in bad:
        lines.insert(rng.randrange(len(lines) + 1), line)
    with open(events_path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return expected
