"""Raw interaction events: parsing, validation and the join into one example per impression.

Plain Python, so the rules are unit-tested without Beam; `log_example_gen` wires them into a
Beam pipeline. Every input line ends either in an example or in the dead-letter output with one
of `REASONS`, so input lines = lines joined into examples + dead-letter lines, exactly.
"""
from __future__ import annotations

import bisect
import csv
import datetime
import json
from typing import Dict, Iterable, List, Optional, Tuple

IMPRESSION = "impression"
RESPONSES = ("click", "like", "purchase", "dwell", "rating", "review")
POST_CLICK = ("like", "purchase", "dwell", "review")
# What `join_impression` returns beside features and labels: bookkeeping, never written as a feature.
NON_FEATURES = ("lines", "review")
# The features and labels of `join_impression`'s example, in its order (`log_example_gen` holds
# examples as tuples of these values: the names once, not in each of millions of examples).
EXAMPLE_FIELDS = ("impression_id", "ts", "user_id", "item_id", "position", "device", "page", "hour", "age_bucket",
                  "region", "user_tenure_days", "category", "price", "title", "click", "like", "purchase", "dwell",
                  "rating", "review_positive")
REVIEW_POSITIVE_STARS = 4  # a review of this many stars or more is positive (`review_positive`)
EVENT_TYPES = (IMPRESSION,) + RESPONSES

REASONS = (
    "invalid_json",          # not a JSON object / not a CSV row of the header's width
    "missing_field",         # a required field is absent or empty
    "wrong_type",            # a field has the wrong type (ids must be strings, position an integer, ...)
    "unknown_event_type",    # `event` is not one of EVENT_TYPES
    "bad_timestamp",         # ts is neither epoch milliseconds nor ISO-8601 within 1990..2100
    "duplicate_event",       # a second event of the same type for the same impression
    "orphan_event",          # a response whose impression never arrived
    "post_click_without_click",  # like/purchase/dwell on an impression that was not clicked
    "unknown_user",          # the impression's user is not in the users table
    "unknown_item",          # the impression's item is not in the items table
    "duplicate_record",      # a second row for the same id in a side table
)

# 1990-01-01 .. 2100-01-01 in epoch ms: MovieLens 100K dates from 1997; epoch seconds (~1e9) stay refused.
_MIN_TS, _MAX_TS = 631_152_000_000, 4_102_444_800_000

_EVENT_FIELDS = {
    IMPRESSION: {"impression_id": str, "user_id": str, "item_id": str, "position": int, "device": str, "page": str},
    "click": {"impression_id": str},
    "like": {"impression_id": str},
    "purchase": {"impression_id": str},
    "dwell": {"impression_id": str, "dwell_ms": float},
    "rating": {"impression_id": str, "value": float},  # an explicit rating (MovieLens), no click needed
    "review": {"impression_id": str, "stars": int, "text": str},  # written after the response it describes
}
ITEM_FIELDS = {"item_id": str, "category": str, "price": float, "title": str}
USER_FIELDS = {"user_id": str, "age_bucket": str, "region": str, "signup_day": str}
# Fields a log may leave out (absent, null or an empty CSV cell): the example then lacks the feature
# and Transform treats it as missing. Ids, event types and timestamps stay required.
OPTIONAL_FIELDS = frozenset({"position", "device", "page", "category", "price", "title", "age_bucket", "region",
                             "signup_day", "text"})
_EPOCH_ORDINAL = datetime.date(1970, 1, 1).toordinal()
CSV_EVENT_COLUMNS = ("event", "impression_id", "ts", "user_id", "item_id", "position", "device", "page", "dwell_ms",
                     "value", "stars", "text")


class BadRecord(ValueError):
    """A record that cannot be used; `reason` is one of REASONS."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


def dead_letter(source: str, reason: str, detail: str, line: str) -> str:
    """One dead-letter record: the untouched input line with where it came from and why it was refused."""
    return json.dumps({"source": source, "reason": reason, "detail": detail, "line": line})


def decode_json(line: str) -> dict:
    try:
        record = json.loads(line)
    except ValueError as e:
        raise BadRecord("invalid_json", str(e)) from None
    if not isinstance(record, dict):
        raise BadRecord("invalid_json", "not a JSON object")
    return record


def decode_csv(line: str, header: List[str]) -> dict:
    """A CSV row as a dict; empty cells are absent fields, numbers stay strings until `_typed`."""
    try:
        (row,) = list(csv.reader([line]))
    except (csv.Error, ValueError) as e:
        raise BadRecord("invalid_json", f"unreadable CSV row: {e}") from None
    if len(row) != len(header):
        raise BadRecord("invalid_json", f"CSV row has {len(row)} cells, header has {len(header)}")
    return {k: v for k, v in zip(header, row) if v != ""}


def _typed(record: dict, fields: Dict[str, type], from_text: bool) -> dict:
    """Checks required fields and types; CSV cells (`from_text`) are converted first."""
    out = {}
    for name, kind in fields.items():
        value = record.get(name)
        if value is None or value == "":
            if name in OPTIONAL_FIELDS:
                out[name] = None
                continue
            raise BadRecord("missing_field", f"'{name}' is missing")
        if from_text and kind is not str:
            try:
                value = kind(value)
            except ValueError:
                raise BadRecord("wrong_type", f"'{name}'={value!r} is not {kind.__name__}") from None
        ok = isinstance(value, kind) or (kind is float and isinstance(value, int))
        if isinstance(value, bool) or not ok or (kind is int and isinstance(value, float)):
            raise BadRecord("wrong_type", f"'{name}'={value!r} is not {kind.__name__}")
        out[name] = float(value) if kind is float else value
    return out


def parse_timestamp(value) -> int:
    """Epoch milliseconds from epoch milliseconds or an ISO-8601 string (UTC if no zone)."""
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("-").isdigit():
            ms = int(text)
        else:
            try:
                moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                raise BadRecord("bad_timestamp", f"ts={value!r} is neither epoch ms nor ISO-8601") from None
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=datetime.timezone.utc)
            ms = int(moment.timestamp() * 1000)
    elif isinstance(value, int) and not isinstance(value, bool):
        ms = value
    elif value is None:
        raise BadRecord("missing_field", "'ts' is missing")
    else:
        raise BadRecord("bad_timestamp", f"ts={value!r} is neither epoch ms nor ISO-8601")
    if not _MIN_TS <= ms < _MAX_TS:
        raise BadRecord("bad_timestamp", f"ts={value!r} is outside 1990..2100")
    return ms


def parse_event(record: dict, from_text: bool = False) -> dict:
    """Validates one decoded event; returns {event, impression_id, ts, ...type-specific fields}."""
    kind = record.get("event")
    if kind is None or kind == "":
        raise BadRecord("missing_field", "'event' is missing")
    if kind not in _EVENT_FIELDS:
        raise BadRecord("unknown_event_type", f"event={kind!r}; known: {', '.join(EVENT_TYPES)}")
    event = _typed(record, _EVENT_FIELDS[kind], from_text)
    event["ts"] = parse_timestamp(record.get("ts"))
    event["event"] = kind
    if kind == "review" and not 1 <= event["stars"] <= 5:
        raise BadRecord("wrong_type", f"'stars'={event['stars']!r} is not 1..5")
    return event


def parse_item(record: dict, from_text: bool = False) -> dict:
    return _typed(record, ITEM_FIELDS, from_text)


def parse_user(record: dict, from_text: bool = False) -> dict:
    """A users row; `signup_day` (ISO date) becomes days since the epoch, for tenure at impression time."""
    user = _typed(record, USER_FIELDS, from_text)
    if user["signup_day"] is None:
        return user
    try:
        user["signup_day"] = datetime.date.fromisoformat(user["signup_day"]).toordinal() - _EPOCH_ORDINAL
    except ValueError:
        raise BadRecord("wrong_type", f"'signup_day'={user['signup_day']!r} is not an ISO date") from None
    return user


def join_impression(events: Iterable[Tuple[dict, str]], users: Dict[str, dict], items: Dict[str, dict]
                    ) -> Tuple[Optional[dict], List[Tuple[str, str, str]]]:
    """Joins the events of one impression id into an example.

    Args:
      events: (parsed event, raw line) pairs sharing one impression_id.
      users, items: side tables keyed by id.
    Returns:
      (example or None, [(reason, detail, raw line) for every line refused]). The example carries
      features, entire-space labels (like and purchase are 0 unless clicked; dwell in seconds; rating 0
      when unrated; `review_positive` only where a review was written, missing elsewhere),
      `lines`, how many input lines it consumed, and `review`, (ts, text) of the impression's review
      or None: not a feature (it comes after the impression), the item's review for later examples.
    """
    events = sorted(events, key=lambda pair: (pair[0]["ts"], pair[1]))
    first: Dict[str, Tuple[dict, str]] = {}
    refused = []
    for event, line in events:
        if event["event"] in first:
            refused.append(("duplicate_event", f"second {event['event']} for {event['impression_id']}", line))
        else:
            first[event["event"]] = (event, line)
    if IMPRESSION not in first:
        return None, refused + [("orphan_event", f"no impression {e['impression_id']}", l) for e, l in first.values()]
    if "click" not in first:
        for kind in POST_CLICK:
            if kind in first:
                event, line = first.pop(kind)
                refused.append(("post_click_without_click", f"{kind} on unclicked {event['impression_id']}", line))
    impression = first[IMPRESSION][0]
    for reason, table, key in (("unknown_user", users, "user_id"), ("unknown_item", items, "item_id")):
        if impression[key] not in table:
            detail = f"{key} {impression[key]!r} is not in the {key[:-3]}s table"
            return None, refused + [(reason, detail, line) for _, line in first.values()]
    user, item = users[impression["user_id"]], items[impression["item_id"]]
    example = {
        "impression_id": impression["impression_id"],
        "ts": impression["ts"],
        "user_id": impression["user_id"],
        "item_id": impression["item_id"],
        "position": impression["position"],
        "device": impression["device"],
        "page": impression["page"],
        "hour": (impression["ts"] // 3_600_000) % 24,  # features None when the log left them out
        "age_bucket": user["age_bucket"],
        "region": user["region"],
        "user_tenure_days": None if user["signup_day"] is None else day_of(impression["ts"]) - user["signup_day"],
        "category": item["category"],
        "price": item["price"],
        "title": item["title"],
        "click": int("click" in first),
        "like": int("like" in first),
        "purchase": int("purchase" in first),
        "dwell": first["dwell"][0]["dwell_ms"] / 1000.0 if "dwell" in first else 0.0,
        "rating": first["rating"][0]["value"] if "rating" in first else 0.0,
        "review_positive": int(first["review"][0]["stars"] >= REVIEW_POSITIVE_STARS) if "review" in first else None,
        "review": (first["review"][0]["ts"], first["review"][0]["text"]) if "review" in first else None,
        "lines": len(first),
    }
    return example, refused


def reviews_before(example: dict, review_times: Dict[str, List[int]]) -> int:
    """How many reviews of the example's item were written strictly before its impression, from
    each item's sorted review timestamps: its own review, written after it, is never one."""
    return bisect.bisect_left(review_times.get(example["item_id"], []), example["ts"])


def day_of(ts: int) -> int:
    """Days since the epoch (UTC) of an epoch-millisecond timestamp."""
    return ts // 86_400_000
