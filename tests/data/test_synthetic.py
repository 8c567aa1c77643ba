import json

import numpy as np
import pytest

from mtrec.data import malformed, synthetic


def _generate(path, **kwargs):
    spec = synthetic.SyntheticLogSpec(**{"impressions": 3000, "days": 3, **kwargs})
    return synthetic.generate(str(path), spec)


def test_same_seed_same_log_and_other_seed_differs(tmp_path):
    _generate(tmp_path / "a", seed=7)
    _generate(tmp_path / "b", seed=7)
    _generate(tmp_path / "c", seed=8)
    for name in ("events.jsonl", "items.jsonl", "users.jsonl", "oracle.csv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert (tmp_path / "a" / "events.jsonl").read_bytes() != (tmp_path / "c" / "events.jsonl").read_bytes()


def test_events_are_unjoined_time_ordered_and_consistent(tmp_path):
    counts = _generate(tmp_path, days=3)
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert [e["ts"] for e in events] == sorted(e["ts"] for e in events)
    by_type = {}
    for e in events:
        by_type.setdefault(e["event"], set()).add(e["impression_id"])
    assert {k: len(v) for k, v in by_type.items()} == counts
    assert by_type["like"] <= by_type["click"] and by_type["purchase"] <= by_type["click"]
    assert by_type["dwell"] == by_type["click"]
    days = {(e["ts"] - synthetic.START_MS) // synthetic.DAY_MS for e in events if e["event"] == "impression"}
    assert days == {0, 1, 2}
    assert set(events[0]) == {"event", "impression_id", "ts", "user_id", "item_id", "position", "device", "page"}


def test_new_items_arrive_every_day_the_last_one_too(tmp_path):
    _generate(tmp_path, impressions=50000, days=5)
    first_day = {}
    for line in (tmp_path / "events.jsonl").read_text().splitlines():
        event = json.loads(line)
        if event["event"] == "impression":
            day = (event["ts"] - synthetic.START_MS) // synthetic.DAY_MS
            first_day[event["item_id"]] = min(day, first_day.get(event["item_id"], day))
    arrivals = np.bincount(list(first_day.values()), minlength=5)
    catalogue = sum(1 for _ in (tmp_path / "items.jsonl").open())
    assert arrivals[0] < 0.9 * catalogue  # not all there from the start
    # every later day brings new items (about NEW_ITEMS_PER_DAY of the catalogue): the last day's
    # are the cold-start slice when it is the eval day
    assert all(arrivals[1:] >= 0.5 * synthetic.NEW_ITEMS_PER_DAY * catalogue), arrivals


def test_oracle_has_every_impression_and_matches_observed_rates(tmp_path):
    counts = _generate(tmp_path, impressions=20000)
    oracle = synthetic.read_oracle(str(tmp_path / "oracle.csv"))
    assert len(oracle["impression_id"]) == 20000
    for task in ("click", "like", "purchase"):
        assert np.all((oracle[task] > 0) & (oracle[task] < 1))
    # Expected counts from the true probabilities agree with the sampled events (within 4 sigma).
    expected_clicks = oracle["click"].sum()
    assert abs(counts["click"] - expected_clicks) < 4 * np.sqrt(expected_clicks)
    expected_likes = (oracle["click"] * oracle["like"]).sum()
    assert abs(counts["like"] - expected_likes) < 4 * np.sqrt(expected_likes)


def test_reviews_follow_purchases_their_words_follow_the_stars_and_the_oracle_knows_their_odds(tmp_path):
    counts = _generate(tmp_path, impressions=30000)
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    purchased = {e["impression_id"]: e["ts"] for e in events if e["event"] == "purchase"}
    reviews = [e for e in events if e["event"] == "review"]
    assert len(reviews) == counts["review"]
    assert all(r["ts"] > purchased[r["impression_id"]] for r in reviews)  # after a purchase, later
    assert 0.3 < len(reviews) / len(purchased) < 0.7
    templates = {stars: {t.split("{")[0] for t in texts} for stars, texts in synthetic.REVIEW_TEMPLATES.items()}
    for review in reviews:  # each text opens with one of its stars' templates, and no other stars' one
        assert [s for s, openings in templates.items() if any(review["text"].startswith(o) for o in openings)] == [
            review["stars"]], review
    oracle = synthetic.read_oracle(str(tmp_path / "oracle.csv"))
    p_positive = dict(zip(oracle["impression_id"], oracle["review_positive"]))
    expected = sum(p_positive[r["impression_id"]] for r in reviews)
    positive = sum(r["stars"] >= 4 for r in reviews)
    assert abs(positive - expected) < 4 * np.sqrt(expected)


def test_task_correlation_controls_shared_signal(tmp_path):
    def corr(rho, path):
        _generate(path, impressions=5000, task_correlation=rho)
        oracle = synthetic.read_oracle(str(path / "oracle.csv"))
        return np.corrcoef(np.log(oracle["like"] / (1 - oracle["like"])),
                           np.log(oracle["purchase"] / (1 - oracle["purchase"])))[0, 1]

    assert corr(1.0, tmp_path / "high") > corr(0.0, tmp_path / "low") + 0.3


def test_gzip_output(tmp_path):
    _generate(tmp_path, gzip=True)
    assert (tmp_path / "events.jsonl.gz").exists() and not (tmp_path / "events.jsonl").exists()


def test_bad_spec_is_refused(tmp_path):
    with pytest.raises(ValueError, match="task_correlation"):
        _generate(tmp_path, task_correlation=1.5)


def test_malformed_injection_counts_every_kind(tmp_path):
    _generate(tmp_path)
    before = (tmp_path / "events.jsonl").read_text().splitlines()
    expected = malformed.inject(str(tmp_path / "events.jsonl"), 21, seed=3)
    after = (tmp_path / "events.jsonl").read_text().splitlines()
    assert len(after) == len(before) + 21
    assert expected == {kind: 3 for kind in malformed.KINDS}


def test_an_items_text_names_every_taste_strongest_first_with_its_strength_and_its_quality():
    text = synthetic.item_text(np.array([0.2, -1.3, 0.6, -0.5]), 0.5, "movies", np.random.default_rng(0))
    description = text["description"]
    assert description.split(":")[0].split()[1] in synthetic.QUALITY[4]  # 0.5: the top grade
    tastes = description.split(": ")[1].rstrip(".").replace(" and ", ", ").split(", ")
    # by strength: dimension 1 (-1.3, very), 2 (0.6), 3 (-0.5), 0 (0.2, slightly); each from its sign's pole
    for said, (dimension, pole, grade) in zip(tastes, [(1, 1, "very "), (2, 0, ""), (3, 1, ""), (0, 0, "slightly ")]):
        assert said.startswith(grade) and said[len(grade):] in synthetic.POLES[dimension][pole], (said, dimension)
    assert text["title"].lower() == f"{tastes[0]} {tastes[1]} film"


def test_a_daily_log_has_a_folder_per_day_with_every_response_to_its_impressions(tmp_path):
    spec = synthetic.SyntheticLogSpec(impressions=4000, days=3, seed=2, taste_drift=0.05, shift_day=2)
    counts = synthetic.generate(str(tmp_path), spec, layout="daily")
    days = sorted(p.name for p in tmp_path.iterdir())
    assert days == ["2026-01-01", "2026-01-02", "2026-01-03"] == [synthetic.day_name(d) for d in range(3)]
    seen, items, devices = set(), [], []
    for day in days:
        events = [json.loads(line) for line in (tmp_path / day / "events.jsonl").read_text().splitlines()]
        shown = {e["impression_id"] for e in events if e["event"] == "impression"}
        assert {e["impression_id"] for e in events} == shown  # responses (after midnight too) beside their impression
        assert not shown & seen
        seen |= shown
        oracle = (tmp_path / day / "oracle.csv").read_text().splitlines()
        assert oracle[0] == synthetic.ORACLE_HEADER and {r.split(",")[0] for r in oracle[1:]} == shown
        items.append({json.loads(line)["item_id"] for line in (tmp_path / day / "items.jsonl").read_text().splitlines()})
        shown_items = {e["item_id"] for e in events if e["event"] == "impression"}
        assert shown_items <= items[-1]  # the side table as of that day holds every item shown
        devices.append(np.mean([e["device"] == synthetic.SHIFTED_DEVICE for e in events if e["event"] == "impression"]))
    assert len(seen) == counts["impression"] == 4000
    assert items[0] < items[1] < items[2]  # new items every day
    assert devices[0] < 0.45 and devices[1] < 0.45 and devices[2] > 0.8  # the shift on day 2 only


def test_taste_drift_moves_the_responses_but_zero_drift_is_the_flat_log(tmp_path):
    _generate(tmp_path / "flat", seed=4)
    _generate(tmp_path / "zero", seed=4, taste_drift=0.0)
    _generate(tmp_path / "drift", seed=4, taste_drift=0.3)
    assert (tmp_path / "flat" / "oracle.csv").read_bytes() == (tmp_path / "zero" / "oracle.csv").read_bytes()
    flat = synthetic.read_oracle(str(tmp_path / "flat" / "oracle.csv"))["click"]
    drifted = synthetic.read_oracle(str(tmp_path / "drift" / "oracle.csv"))["click"]
    assert np.abs(flat - drifted).mean() > 0.01
    with pytest.raises(ValueError, match="layout"):
        synthetic.generate(str(tmp_path / "x"), synthetic.SyntheticLogSpec(impressions=100), layout="weekly")
