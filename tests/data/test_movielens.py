"""The MovieLens 100K adapter on the shared copy (never committed: GroupLens forbids redistribution)."""
import json
import os
import shutil
import zipfile

import apache_beam as beam
import pytest

from mtrec.components import log_example_gen as leg
from mtrec.data import movielens
from tests.conftest import MOVIELENS_DIR

pytestmark = pytest.mark.skipif(not os.path.exists(os.path.join(MOVIELENS_DIR, "u.data")),
                                reason=f"MovieLens 100K is not at {MOVIELENS_DIR}")


@pytest.fixture()
def small_movielens(tmp_path):
    """The real user and item tables with the first 300 ratings."""
    ml = tmp_path / "ml"
    ml.mkdir()
    for name in ("u.user", "u.item", "u.genre"):
        shutil.copy(os.path.join(MOVIELENS_DIR, name), ml / name)
    with open(os.path.join(MOVIELENS_DIR, "u.data")) as f:
        (ml / "u.data").write_text("".join(f.readline() for _ in range(300)))
    return ml


def test_every_rating_becomes_one_clicked_impression_with_its_stars_and_like_from_four(small_movielens, tmp_path):
    counts = movielens.to_event_log(str(small_movielens), str(tmp_path / "log"))
    ratings = [line.split("\t") for line in (small_movielens / "u.data").read_text().splitlines()]
    events = [json.loads(line) for line in (tmp_path / "log" / "events.jsonl").read_text().splitlines()]
    likes = sum(int(r[2]) >= 4 for r in ratings)
    assert counts == {"events": 3 * 300 + likes, "items": 1682, "users": 943}
    by_kind = {}
    for event in events:
        by_kind.setdefault(event["event"], []).append(event)
    assert {k: len(v) for k, v in by_kind.items()} == {"impression": 300, "click": 300, "rating": 300, "like": likes}
    user, item, stars, ts = ratings[0]
    rating = next(e for e in by_kind["rating"] if e["impression_id"] == f"{user}-{item}")
    assert (rating["value"], rating["ts"]) == (float(stars), int(ts) * 1000)
    assert [e["ts"] for e in events] == sorted(e["ts"] for e in events)
    users = {u["user_id"]: u for u in map(json.loads, (tmp_path / "log" / "users.jsonl").read_text().splitlines())}
    assert users["1"]["age_bucket"] == "18-24" and users["1"]["region"] == "zip8"  # 1|24|M|technician|85711
    items = {i["item_id"]: i for i in map(json.loads, (tmp_path / "log" / "items.jsonl").read_text().splitlines())}
    assert items["1"]["title"] == "Toy Story (1995)" and items["1"]["category"] == "Animation"
    assert items["1"]["genres"] == "Animation, Children's, Comedy"  # every genre, as text


def test_ingestion_accepts_every_line_of_the_converted_log(small_movielens, tmp_path):
    counts = movielens.to_event_log(str(small_movielens), str(tmp_path / "log"))
    pipeline = beam.Pipeline(argv=["--direct_running_mode=in_memory"])
    leg.build_ingestion(pipeline, str(tmp_path / "log"), "jsonl", "hash", 1, 20, str(tmp_path / "examples"),
                        str(tmp_path / "dead"), split_seed=42)
    result = pipeline.run()
    result.wait_until_finish()
    summary = leg.summarize_counts(leg.read_counters(result))
    assert summary["dead_letter"]["total"] == 0
    assert summary["input_lines"] == counts["events"] + counts["items"] + counts["users"]
    assert sum(summary["examples"].values()) == 300


def test_a_different_split_seed_draws_a_different_split():
    ids = [f"{u}-{i}" for u in range(50) for i in range(20)]
    default = [leg.hash_split(x, 20) for x in ids]
    seeded = [leg.hash_split(x, 20, seed=42) for x in ids]
    assert default != seeded
    assert 0.15 < sum(seeded) / len(ids) < 0.25


def test_download_unpacks_the_archive_and_a_missing_file_is_named(tmp_path):
    archive = tmp_path / "ml-100k.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for name in movielens.FILES:
            z.write(os.path.join(MOVIELENS_DIR, name), f"ml-100k/{name}")
    out = movielens.download(str(tmp_path / "out"), url=archive.as_uri())
    assert sorted(os.listdir(out)) == sorted(movielens.FILES)
    os.remove(os.path.join(out, "u.item"))
    with pytest.raises(FileNotFoundError, match="missing u.item"):
        movielens.check(out)
    with pytest.raises(ConnectionError, match="could not download MovieLens 100K from http://127.0.0.1:9/"):
        movielens.download(str(tmp_path / "none"), url="http://127.0.0.1:9/ml-100k.zip")
