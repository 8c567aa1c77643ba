import json

import pytest

from mtrec.components import events as ev

IMPRESSION = {"event": "impression", "impression_id": "imp-1", "ts": 1767225600000, "user_id": "u1", "item_id": "i1",
              "position": 2, "device": "mobile", "page": "home"}
USERS = {"u1": {"user_id": "u1", "age_bucket": "25-34", "region": "north", "signup_day": 20449}}
ITEMS = {"i1": {"item_id": "i1", "category": "news", "price": 9.5, "title": "a b"}}


def _event(**fields):
    return ev.parse_event(dict(fields))


@pytest.mark.parametrize("line, reason", [
    ('{"event": "click", "impression_id": "imp-1", "ts": 17672256', "invalid_json"),
    ("[1, 2, 3]", "invalid_json"),
    ("", "invalid_json"),
])
def test_undecodable_lines(line, reason):
    with pytest.raises(ev.BadRecord) as bad:
        ev.decode_json(line)
    assert bad.value.reason == reason


@pytest.mark.parametrize("record, reason", [
    ({"impression_id": "imp-1", "ts": 1767225600000}, "missing_field"),
    ({"event": "click", "ts": 1767225600000}, "missing_field"),
    ({"event": "click", "impression_id": "imp-1"}, "missing_field"),
    ({"event": "click", "impression_id": 17, "ts": 1767225600000}, "wrong_type"),
    (dict(IMPRESSION, position="2"), "wrong_type"),
    (dict(IMPRESSION, position=True), "wrong_type"),
    (dict(IMPRESSION, user_id=None), "missing_field"),
    ({"event": "dwell", "impression_id": "imp-1", "ts": 1767225600000, "dwell_ms": "long"}, "wrong_type"),
    ({"event": "hover", "impression_id": "imp-1", "ts": 1767225600000}, "unknown_event_type"),
    ({"event": "click", "impression_id": "imp-1", "ts": "yesterday"}, "bad_timestamp"),
    ({"event": "click", "impression_id": "imp-1", "ts": 12}, "bad_timestamp"),
    ({"event": "click", "impression_id": "imp-1", "ts": 1.5e12}, "bad_timestamp"),
])
def test_invalid_events_are_refused_with_their_reason(record, reason):
    with pytest.raises(ev.BadRecord) as bad:
        ev.parse_event(record)
    assert bad.value.reason == reason
    assert bad.value.reason in ev.REASONS


def test_timestamps_accept_epoch_ms_and_iso_8601():
    assert ev.parse_timestamp(1767225600000) == 1767225600000
    assert ev.parse_timestamp("2026-01-01T00:00:00Z") == 1767225600000
    assert ev.parse_timestamp("2026-01-01T01:00:00+01:00") == 1767225600000
    assert ev.parse_timestamp("2026-01-01 00:00:00") == 1767225600000
    assert ev.parse_timestamp("1767225600000") == 1767225600000


def test_csv_rows_are_typed_like_json():
    header = list(ev.CSV_EVENT_COLUMNS)
    row = ev.decode_csv("impression,imp-1,1767225600000,u1,i1,2,mobile,home,,,,", header)
    assert ev.parse_event(row, from_text=True) == dict(IMPRESSION)
    with pytest.raises(ev.BadRecord, match="wrong_type"):
        ev.parse_event(ev.decode_csv("impression,imp-1,1767225600000,u1,i1,two,mobile,home,,,,", header), from_text=True)
    with pytest.raises(ev.BadRecord, match="invalid_json"):
        ev.decode_csv("click,imp-1", header)


def test_users_table_signup_day_becomes_tenure():
    user = ev.parse_user({"user_id": "u1", "age_bucket": "25-34", "region": "north", "signup_day": "2025-12-27"})
    assert user["signup_day"] == 20449
    with pytest.raises(ev.BadRecord, match="wrong_type"):
        ev.parse_user({"user_id": "u1", "age_bucket": "25-34", "region": "north", "signup_day": "last year"})


def _join(*events):
    return ev.join_impression([(e, json.dumps(e)) for e in events], USERS, ITEMS)


def test_join_builds_entire_space_labels_and_features():
    example, refused = _join(
        _event(**IMPRESSION),
        _event(event="click", impression_id="imp-1", ts=1767225605000),
        _event(event="like", impression_id="imp-1", ts=1767225609000),
        _event(event="dwell", impression_id="imp-1", ts=1767225620000, dwell_ms=15000))
    assert refused == []
    assert example["click"] == 1 and example["like"] == 1 and example["purchase"] == 0
    assert example["dwell"] == 15.0 and example["lines"] == 4
    assert example["user_tenure_days"] == 5 and example["category"] == "news" and example["hour"] == 0
    # LogExampleGen carries examples as tuples of EXAMPLE_FIELDS: a field left out there is lost
    assert [k for k in example if k not in ev.NON_FEATURES] == list(ev.EXAMPLE_FIELDS)


def test_a_review_labels_its_impression_and_is_kept_apart_from_the_features():
    click = _event(event="click", impression_id="imp-1", ts=1767225605000)
    review = _event(event="review", impression_id="imp-1", ts=1767312000000, stars=4, text="A nice read.")
    example, refused = _join(_event(**IMPRESSION), click, review)
    assert refused == [] and example["review_positive"] == 1 and example["review"] == (1767312000000, "A nice read.")
    example, _ = _join(_event(**IMPRESSION), click, dict(review, stars=3, text=None))
    assert example["review_positive"] == 0 and example["review"] == (1767312000000, None)  # text is optional
    example, refused = _join(_event(**IMPRESSION), review)  # a review needs the click it follows
    assert example["review_positive"] is None and [r[0] for r in refused] == ["post_click_without_click"]
    assert _join(_event(**IMPRESSION))[0]["review_positive"] is None  # not reviewed: missing, not 0
    with pytest.raises(ev.BadRecord, match="wrong_type: 'stars'=6"):
        _event(event="review", impression_id="imp-1", ts=1767312000000, stars=6, text="?")


def test_reviews_before_counts_only_earlier_reviews():
    times = {"i1": [10, 20, 20, 30]}
    assert [ev.reviews_before({"item_id": "i1", "ts": t}, times) for t in (5, 10, 20, 21, 99)] == [0, 0, 1, 3, 4]
    assert ev.reviews_before({"item_id": "i2", "ts": 99}, times) == 0


def test_impression_without_responses_has_zero_labels():
    example, refused = _join(_event(**IMPRESSION))
    assert refused == [] and (example["click"], example["like"], example["purchase"], example["dwell"]) == (0, 0, 0, 0.0)


def test_duplicates_orphans_and_unclicked_post_click_events_are_dead_lettered():
    click = _event(event="click", impression_id="imp-1", ts=1767225605000)
    like = _event(event="like", impression_id="imp-1", ts=1767225606000)
    example, refused = _join(_event(**IMPRESSION), _event(**IMPRESSION), click, dict(click))
    assert example["click"] == 1 and example["lines"] == 2
    assert [r[0] for r in refused] == ["duplicate_event", "duplicate_event"]

    example, refused = _join(_event(**IMPRESSION), like)
    assert example["like"] == 0 and [r[0] for r in refused] == ["post_click_without_click"]

    example, refused = _join(click, like)
    assert example is None and [r[0] for r in refused] == ["orphan_event", "orphan_event"]


def test_unknown_user_or_item_dead_letters_the_whole_impression():
    click = _event(event="click", impression_id="imp-1", ts=1767225605000)
    example, refused = _join(_event(**dict(IMPRESSION, user_id="u404")), click)
    assert example is None and [r[0] for r in refused] == ["unknown_user", "unknown_user"]
    example, refused = _join(_event(**dict(IMPRESSION, item_id="i404")))
    assert example is None and [r[0] for r in refused] == ["unknown_item"]


def test_dead_letter_record_keeps_the_line_untouched():
    record = json.loads(ev.dead_letter("events", "invalid_json", "detail", '{"broken'))
    assert record == {"source": "events", "reason": "invalid_json", "detail": "detail", "line": '{"broken'}
