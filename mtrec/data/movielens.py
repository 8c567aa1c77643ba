"""MovieLens 100K as an mtrec interaction log, so the same pipeline runs on real ratings.

GroupLens' license forbids redistributing the data: `download` fetches it for the user
(`mtrec data movielens-100k --out DIR`), and nothing of it is shipped with mtrec.

`to_event_log` writes events.jsonl, items.jsonl and users.jsonl in mtrec's log format. Every
rating becomes one impression (id `<user>-<item>`, at the rating's time) with a click (the user
watched it), a `rating` event carrying the stars, and a like when the rating is 4 or more.
Users: age bucket, region = first digit of the zip code (US zip regions; `other` for the rest),
and the day of their first rating as signup day. Items: first listed genre as category, and the
title and every genre (`genres`, e.g. "Animation, Children's, Comedy") as text for `text.fields`;
MovieLens has no prices, so price is 0 and the MovieLens preset does not use it.
"""
from __future__ import annotations

import datetime
import io
import json
import os
import urllib.request
import zipfile
from typing import Dict

URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
FILES = ("u.data", "u.user", "u.item", "u.genre")
LIKE_THRESHOLD = 4
_AGE_BUCKETS = ((18, "under18"), (25, "18-24"), (35, "25-34"), (45, "35-44"), (50, "45-49"), (56, "50-55"))


def download(out_dir: str, url: str = URL) -> str:
    """Downloads and unpacks MovieLens 100K's u.* files into `out_dir`; returns `out_dir`."""
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            archive = zipfile.ZipFile(io.BytesIO(response.read()))
    except (OSError, zipfile.BadZipFile) as e:
        raise ConnectionError(f"could not download MovieLens 100K from {url}: {e}") from e
    os.makedirs(out_dir, exist_ok=True)
    for name in archive.namelist():
        if os.path.basename(name).startswith("u.") or os.path.basename(name) == "README":
            with open(os.path.join(out_dir, os.path.basename(name)), "wb") as f:
                f.write(archive.read(name))
    check(out_dir)
    return out_dir


def check(ml_dir: str) -> None:
    missing = [f for f in FILES if not os.path.exists(os.path.join(ml_dir, f))]
    if missing:
        raise FileNotFoundError(f"{ml_dir} is not a MovieLens 100K directory: missing {', '.join(missing)} "
                                f"(get it with `mtrec data movielens-100k --out {ml_dir}`)")


def _lines(ml_dir: str, name: str):
    with open(os.path.join(ml_dir, name), encoding="latin-1") as f:
        return [line.rstrip("\n") for line in f if line.strip()]


def _age_bucket(age: int) -> str:
    return next((bucket for limit, bucket in _AGE_BUCKETS if age < limit), "56+")


def to_event_log(ml_dir: str, out_dir: str) -> Dict[str, int]:
    """Writes the event log for the MovieLens 100K files in `ml_dir`; returns line counts."""
    check(ml_dir)
    ratings = sorted((int(ts), user, item, int(stars)) for user, item, stars, ts in
                     (line.split("\t") for line in _lines(ml_dir, "u.data")))
    first_day = {}
    for ts, user, _, _ in ratings:
        first_day.setdefault(user, datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).date().isoformat())
    genres = [line.split("|")[0] for line in _lines(ml_dir, "u.genre")]
    os.makedirs(out_dir, exist_ok=True)
    counts = {"events": 0, "items": 0, "users": 0}
    with open(os.path.join(out_dir, "users.jsonl"), "w") as f:
        for line in _lines(ml_dir, "u.user"):
            user, age, _gender, _occupation, zip_code = line.split("|")
            region = f"zip{zip_code[0]}" if zip_code[:1].isdigit() else "other"
            f.write(json.dumps({"user_id": user, "age_bucket": _age_bucket(int(age)), "region": region,
                                "signup_day": first_day.get(user, "1997-09-01")}) + "\n")
            counts["users"] += 1
    with open(os.path.join(out_dir, "items.jsonl"), "w") as f:
        for line in _lines(ml_dir, "u.item"):
            fields = line.split("|")
            flags = fields[5:]
            listed = [g for g, flag in zip(genres, flags) if flag == "1"]
            # `genres` is text only (for text.fields); the category feature is the first genre
            f.write(json.dumps({"item_id": fields[0], "category": listed[0] if listed else "unknown", "price": 0.0,
                                "title": fields[1], "genres": ", ".join(listed)}) + "\n")
            counts["items"] += 1
    with open(os.path.join(out_dir, "events.jsonl"), "w") as f:
        for ts, user, item, stars in ratings:
            ms, impression = ts * 1000, f"{user}-{item}"
            events = [{"event": "impression", "impression_id": impression, "ts": ms, "user_id": user, "item_id": item,
                       "position": 0, "device": "web", "page": "movielens"},
                      {"event": "click", "impression_id": impression, "ts": ms},
                      {"event": "rating", "impression_id": impression, "ts": ms, "value": float(stars)}]
            if stars >= LIKE_THRESHOLD:
                events.append({"event": "like", "impression_id": impression, "ts": ms})
            for event in events:
                f.write(json.dumps(event) + "\n")
            counts["events"] += len(events)
    return counts
