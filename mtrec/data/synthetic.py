"""The embedded default data: a seeded synthetic interaction log with known true probabilities.

What a platform logs, not a ready table: `events.jsonl` holds impressions, then clicks on some,
then likes, purchases and dwell on some clicks, and reviews (stars 1-5 and a short text whose
wording follows them) after some purchases, unjoined and in timestamp order across several days;
`items.jsonl` and `users.jsonl` are the side tables, with text in plain words (item titles and
descriptions, users' `about`) that says where each lies on the latent tastes. Responses come from a latent user/item model
with position bias; `task_correlation` sets how much like and purchase share the click signal.
New items arrive every day, the eval days too, so some eval impressions show items no training
impression did (the cold-start slice), which only their side-table attributes and text describe.
`oracle.csv` keeps each impression's true probabilities (like and purchase given click, a
positive review given one) and expected dwell, so evaluation can report the best AUC any model could reach on the same examples.
"""
from __future__ import annotations

import dataclasses
import datetime
import gzip
import json
import os
from typing import Dict

import numpy as np

START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
DAY_MS = 86_400_000
EPOCH_ORDINAL = datetime.date(1970, 1, 1).toordinal()
DEVICES = ["mobile", "desktop", "tablet"]
PAGES = ["home", "search", "category", "detail"]
AGE_BUCKETS = ["18-24", "25-34", "35-44", "45-54", "55+"]
REGIONS = ["north", "south", "east", "west", "central", "islands"]
CATEGORIES = ["news", "sports", "music", "movies", "games", "food", "travel", "fashion", "tech", "home",
              "books", "kids"]
POSITIONS = 10
NEW_ITEMS_PER_DAY = 0.05  # share of the catalogue released on each day after the first
LATENT_DIM = 4
# An item's tastes: this share of its category's, plus its own part (this spread), which only its
# id (once seen) and its text tell; its quality (the click bias) has this spread, also in its text.
ITEM_CATEGORY_SHARE, ITEM_OWN_SD, ITEM_QUALITY_SD = 0.6, 0.6, 0.3
# Words for either end of each latent taste dimension: titles, descriptions and users' `about`
# texts say where an item or a user lies, so a language model's vectors carry the affinity.
POLES = [
    (["cheerful", "upbeat", "bright", "sunny", "playful"], ["dark", "gritty", "moody", "bleak", "somber"]),
    (["classic", "vintage", "timeless", "traditional", "retro"], ["modern", "futuristic", "innovative", "sleek", "new"]),
    (["relaxing", "calm", "gentle", "cozy", "soothing"], ["intense", "thrilling", "fast", "wild", "explosive"]),
    (["simple", "easy", "casual", "light", "friendly"], ["advanced", "expert", "technical", "challenging", "deep"]),
]
NOUNS = {"news": "report", "sports": "match recap", "music": "album", "movies": "film", "games": "game",
         "food": "recipe", "travel": "travel guide", "fashion": "outfit", "tech": "gadget review", "home": "home decor idea",
         "books": "novel", "kids": "kids show"}
# How strongly an item leans to a pole (|taste| below each bound), said before the pole's word.
STRENGTH = ((0.4, "slightly "), (1.0, ""), (np.inf, "very "))
# An item's quality (its click bias) in five grades, split at these values.
QUALITY = (["dreadful", "terrible"], ["forgettable", "mediocre", "uneven"], ["solid", "well made", "decent"],
           ["excellent", "delightful"], ["acclaimed", "award-winning", "brilliant"])
QUALITY_EDGES = [-0.45, -0.15, 0.15, 0.45]
LAYOUTS = ("flat", "daily")
DAILY_TASTE_DRIFT = 0.05  # `generate-logs --layout daily`'s default step of the tastes a day
ORACLE_HEADER = "impression_id,click,like,purchase,dwell,review_positive"
# A generator option's sharp shift (`shift_day`): this share of the day's impressions from this device.
SHIFTED_SHARE, SHIFTED_DEVICE = 0.8, "tablet"
REVIEW_RATE = 0.5  # share of purchases reviewed
# What a review of so many stars says: the wording follows the stars, {noun} is the item's kind.
REVIEW_TEMPLATES = {
    1: ["Terrible {noun}, a waste of money.", "Awful. I regret buying this {noun}.", "The worst {noun} I have tried."],
    2: ["Disappointing {noun}, not what I hoped for.", "Not great, the {noun} felt weak.", "Poor {noun}, I expected more."],
    3: ["An okay {noun}, nothing special.", "Average {noun}, it was fine.", "Decent {noun} but forgettable."],
    4: ["Really good {noun}, I would recommend it.", "A nice {noun}, worth the price.", "I liked this {noun} a lot."],
    5: ["Absolutely loved this {noun}!", "A wonderful {noun}, five stars.", "The best {noun} I have had in years."],
}


@dataclasses.dataclass
class SyntheticLogSpec:
    """Size and shape of a generated log."""

    impressions: int = 200_000
    days: int = 7
    seed: int = 0
    task_correlation: float = 0.5
    gzip: bool = False
    # Daily logs: each day the tastes of each age group take a step of this spread (0: none).
    taste_drift: float = 0.0
    # A sharp shift on this day (0-based; -1: none): most impressions come from tablets.
    shift_day: int = -1

    @property
    def users(self) -> int:
        return max(100, self.impressions // 100)

    @property
    def items(self) -> int:
        return max(60, self.impressions // 400)


def _release_days(n_items: int, spec: "SyntheticLogSpec") -> np.ndarray:
    """Each item's first day in the log: most are there from the start, NEW_ITEMS_PER_DAY of the
    catalogue arrives on each later day (the eval days too: items no training impression shows)."""
    releases = np.random.default_rng([spec.seed, 2])  # a stream of its own: the other draws stay as they were
    day = np.zeros(n_items, dtype=np.int64)
    if spec.days > 1:
        new = releases.random(n_items) < NEW_ITEMS_PER_DAY * (spec.days - 1)
        day[new] = releases.integers(1, spec.days, size=int(new.sum()))
    return day


def _released_items(item: np.ndarray, day: np.ndarray, release_day: np.ndarray, popularity: np.ndarray,
                    spec: "SyntheticLogSpec") -> np.ndarray:
    """`item`, with every impression of an item not released yet drawn again among that day's catalogue."""
    redraws = np.random.default_rng([spec.seed, 3])
    item = item.copy()
    for d in np.unique(day[release_day[item] > day]):
        early = np.flatnonzero((day == d) & (release_day[item] > d))
        weight = popularity * (release_day <= d)
        item[early] = redraws.choice(len(popularity), size=len(early), p=weight / weight.sum())
    return item


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _taste_drift(spec: SyntheticLogSpec) -> np.ndarray:
    """[day, age bucket, taste]: a random walk from 0 on day 0, a step of `taste_drift` a day."""
    steps = np.random.default_rng([spec.seed, 5]).normal(0, spec.taste_drift, (spec.days, len(AGE_BUCKETS), LATENT_DIM))
    steps[0] = 0.0
    return np.cumsum(steps, axis=0)


def day_name(day: int) -> str:
    """The folder of day `day` of a daily log: its date, YYYY-MM-DD (TFX's {YYYY}-{MM}-{DD} span)."""
    return str(datetime.date.fromordinal(EPOCH_ORDINAL + START_MS // DAY_MS + day))


def _write_lines(path: str, rows) -> None:
    with open(path, "w") as f:
        f.writelines(row + "\n" for row in rows)


def generate(out_dir: str, spec: SyntheticLogSpec, layout: str = "flat") -> Dict[str, int]:
    """Writes events, items, users and oracle files into `out_dir` (`layout` flat), or into one
    folder per day, `out_dir/YYYY-MM-DD/` (`daily`): that day's impressions with every response to
    them (also those after midnight), the items released by then, the users; returns line counts
    per event type."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout {layout!r}: must be one of {LAYOUTS}")
    if spec.impressions < 1 or spec.days < 1:
        raise ValueError(f"impressions ({spec.impressions}) and days ({spec.days}) must be positive")
    if not 0.0 <= spec.task_correlation <= 1.0:
        raise ValueError(f"task_correlation must be in [0, 1], got {spec.task_correlation}")
    rng = np.random.default_rng(spec.seed)
    os.makedirs(out_dir, exist_ok=True)
    n, n_users, n_items = spec.impressions, spec.users, spec.items

    # Side tables. A user's tastes are mostly their age's and region's (learnable from the tables),
    # plus a small part of their own; an item's are partly its category's, the rest its own, which
    # only its id embedding (once seen) and its text can tell.
    age = rng.integers(len(AGE_BUCKETS), size=n_users)
    region = rng.integers(len(REGIONS), size=n_users)
    signup_day = START_MS // DAY_MS + rng.integers(-720, 0, size=n_users)
    device_pref = rng.integers(len(DEVICES), size=n_users)
    age_vec, region_vec = rng.normal(0, 0.8, (len(AGE_BUCKETS), LATENT_DIM)), rng.normal(0, 0.6, (len(REGIONS), LATENT_DIM))
    user_vec = age_vec[age] + region_vec[region] + rng.normal(0, 0.15, (n_users, LATENT_DIM))
    drift = _taste_drift(spec)  # [day, age bucket, taste]: where each age group's tastes have moved
    user_bias = rng.normal(0, 0.2, n_users)
    activity = rng.pareto(2.0, n_users) + 1.0

    category = rng.integers(len(CATEGORIES), size=n_items)
    cat_vec, cat_vec2 = rng.normal(0, 1.0, (2, len(CATEGORIES), LATENT_DIM))
    item_vec = ITEM_CATEGORY_SHARE * cat_vec[category] + rng.normal(0, ITEM_OWN_SD, (n_items, LATENT_DIM))
    item_vec2 = cat_vec2[category] + rng.normal(0, 0.15, (n_items, LATENT_DIM))
    item_bias = rng.normal(0, ITEM_QUALITY_SD, n_items)
    log_price = rng.normal(2.5 + 0.15 * category, 0.6)
    popularity = rng.pareto(1.5, n_items) + 1.0

    # Impressions.
    ts = np.sort(START_MS + rng.integers(0, spec.days * DAY_MS, size=n))
    user = rng.choice(n_users, size=n, p=activity / activity.sum())
    item = rng.choice(n_items, size=n, p=popularity / popularity.sum())
    release_day = _release_days(n_items, spec)
    item = _released_items(item, (ts - START_MS) // DAY_MS, release_day, popularity, spec)
    position = rng.integers(POSITIONS, size=n)
    device = np.where(rng.random(n) < 0.7, device_pref[user], rng.integers(len(DEVICES), size=n))
    page = rng.integers(len(PAGES), size=n)
    hour = (ts % DAY_MS) // 3_600_000
    day = (ts - START_MS) // DAY_MS
    if spec.shift_day >= 0:  # its own stream: the other draws stay as they were
        shifted = (day == spec.shift_day) & (np.random.default_rng([spec.seed, 6]).random(n) < SHIFTED_SHARE)
        device[shifted] = DEVICES.index(SHIFTED_DEVICE)

    # Responses: position bias, context effects and user/item affinity; like and purchase share
    # `task_correlation` of their signal with the click affinity.
    tastes = user_vec[user] + drift[day, age[user]]
    affinity = np.einsum("ij,ij->i", tastes, item_vec[item]) / np.sqrt(LATENT_DIM)
    affinity2 = np.einsum("ij,ij->i", tastes, item_vec2[item]) / np.sqrt(LATENT_DIM)
    rho = spec.task_correlation
    logit_click = (-1.2 + affinity - 0.12 * position + np.array([0.2, -0.1, 0.0])[device]
                   + np.array([0.0, 0.3, -0.2, 0.4])[page] + 0.3 * np.sin(hour / 24 * 2 * np.pi)
                   + user_bias[user] + item_bias[item])
    logit_like = -0.6 + 1.5 * (np.sqrt(rho) * affinity + np.sqrt(1 - rho) * affinity2) + 0.5 * item_bias[item]
    logit_purchase = (-1.0 + 1.5 * (np.sqrt(rho) * affinity + np.sqrt(1 - rho) * (0.4 * age[user] - 0.8) * (log_price[item] - 3.0))
                      + np.array([-0.2, 0.4, 0.1])[device])
    p_click, p_like, p_purchase = _sigmoid(logit_click), _sigmoid(logit_like), _sigmoid(logit_purchase)
    # A review's stars follow the item's quality (what others' reviews tell) and the user's taste.
    p_review_positive = _sigmoid(-0.4 + 4.0 * item_bias[item] + affinity)
    dwell_mu = 2.8 + 0.35 * affinity2 + np.array([0.0, 0.1, 0.0, 0.4])[page] - 0.2 * (device == 0)
    dwell_sigma = 0.5
    dwell_mean_s = np.exp(dwell_mu + dwell_sigma ** 2 / 2)

    click = rng.random(n) < p_click
    like = click & (rng.random(n) < p_like)
    purchase = click & (rng.random(n) < p_purchase)
    dwell_ms = np.round(np.exp(rng.normal(dwell_mu, dwell_sigma)) * 1000).astype(np.int64)
    click_ts = ts + rng.integers(500, 30_000, size=n)
    dwell_ts = click_ts + dwell_ms
    like_ts = click_ts + (rng.random(n) * dwell_ms).astype(np.int64)
    purchase_ts = dwell_ts + rng.integers(1_000, 600_000, size=n)
    reviews = np.random.default_rng([spec.seed, 4])  # a stream of its own: the other draws stay as they were
    review = purchase & (reviews.random(n) < REVIEW_RATE)
    positive = reviews.random(n) < p_review_positive
    stars = np.where(positive, reviews.choice([4, 5], size=n), reviews.choice([1, 2, 3], size=n, p=[0.25, 0.3, 0.45]))
    review_ts = purchase_ts + reviews.integers(3_600_000, 3 * DAY_MS, size=n)
    wording = reviews.integers(len(REVIEW_TEMPLATES[1]), size=n)

    imp_ids = [f"imp-{spec.seed}-{i:08d}" for i in range(n)]
    u_ids = [f"u{u}" for u in range(n_users)]
    i_ids = [f"i{j}" for j in range(n_items)]

    lines, times, owners = [], [], []  # owners: the impression each line belongs to
    lines += [f'{{"event": "impression", "impression_id": "{imp_ids[i]}", "ts": {ts[i]}, "user_id": "{u_ids[user[i]]}", '
              f'"item_id": "{i_ids[item[i]]}", "position": {position[i]}, "device": "{DEVICES[device[i]]}", '
              f'"page": "{PAGES[page[i]]}"}}' for i in range(n)]
    times.append(ts)
    owners.append(np.arange(n))
    for name, mask, when in (("click", click, click_ts), ("like", like, like_ts), ("purchase", purchase, purchase_ts)):
        idx = np.flatnonzero(mask)
        lines += [f'{{"event": "{name}", "impression_id": "{imp_ids[i]}", "ts": {when[i]}}}' for i in idx]
        times.append(when[idx])
        owners.append(idx)
    idx = np.flatnonzero(click)
    lines += [f'{{"event": "dwell", "impression_id": "{imp_ids[i]}", "ts": {dwell_ts[i]}, "dwell_ms": {dwell_ms[i]}}}'
              for i in idx]
    times.append(dwell_ts[idx])
    owners.append(idx)
    idx = np.flatnonzero(review)
    lines += [json.dumps({"event": "review", "impression_id": imp_ids[i], "ts": int(review_ts[i]), "stars": int(stars[i]),
                          "text": REVIEW_TEMPLATES[stars[i]][wording[i]].format(noun=NOUNS[CATEGORIES[category[item[i]]]])})
              for i in idx]
    times.append(review_ts[idx])
    owners.append(idx)
    order = np.argsort(np.concatenate(times), kind="stable")
    owner = np.concatenate(owners)[order]

    words = np.random.default_rng([spec.seed, 1])  # text draws of their own: the log stays as it was
    item_rows = []
    for j in range(n_items):
        cat = CATEGORIES[category[j]]
        item_rows.append(json.dumps({"item_id": i_ids[j], "category": cat, "price": round(float(np.exp(log_price[j])), 2),
                                     **item_text(item_vec[j], item_bias[j], cat, words)}))
    user_rows = [json.dumps({"user_id": u_ids[u], "age_bucket": AGE_BUCKETS[age[u]], "region": REGIONS[region[u]],
                             "signup_day": str(datetime.date.fromordinal(EPOCH_ORDINAL + int(signup_day[u]))),
                             "about": user_text(user_vec[u], words)}) for u in range(n_users)]
    oracle_rows = [f"{imp_ids[i]},{p_click[i]:.6f},{p_like[i]:.6f},{p_purchase[i]:.6f},{dwell_mean_s[i]:.4f},"
                   f"{p_review_positive[i]:.6f}" for i in range(n)]

    def write(folder, impressions, items):
        """The log of `impressions` (a mask) with every response to them, and the `items` rows."""
        os.makedirs(folder, exist_ok=True)
        events_path = os.path.join(folder, "events.jsonl" + (".gz" if spec.gzip else ""))
        with (gzip.open(events_path, "wt") if spec.gzip else open(events_path, "w")) as f:
            f.writelines(lines[i] + "\n" for i in order[impressions[owner]])
        _write_lines(os.path.join(folder, "items.jsonl"), [item_rows[j] for j in np.flatnonzero(items)])
        _write_lines(os.path.join(folder, "users.jsonl"), user_rows)
        _write_lines(os.path.join(folder, "oracle.csv"), [ORACLE_HEADER] + [oracle_rows[i] for i in np.flatnonzero(impressions)])

    if layout == "daily":
        for d in range(spec.days):
            write(os.path.join(out_dir, day_name(d)), day == d, release_day <= d)
    else:
        write(out_dir, np.ones(n, bool), np.ones(n_items, bool))
    return {"impression": n, "click": int(click.sum()), "like": int(like.sum()),
            "purchase": int(purchase.sum()), "dwell": int(click.sum()), "review": int(review.sum())}


def _pole_words(vector: np.ndarray, words: np.random.Generator, count: int, graded: bool = False) -> list:
    """Words for the `count` strongest latent dimensions of `vector`, each from its sign's pole;
    `graded`: each after a word for how strongly (`STRENGTH`)."""
    strongest = np.argsort(-np.abs(vector))[:count]
    grade = lambda v: next(word for bound, word in STRENGTH if abs(v) < bound) if graded else ""  # noqa: E731
    return [grade(vector[d]) + words.choice(POLES[d][int(vector[d] < 0)]) for d in strongest]


def item_text(vector: np.ndarray, bias: float, category: str, words: np.random.Generator) -> dict:
    """A title (the two strongest tastes) and a description (its quality and every taste, how
    strongly each) in plain words: what a new item's text tells that its category does not."""
    tastes = _pole_words(vector, words, len(vector), graded=True)
    quality = words.choice(QUALITY[int(np.digitize(bias, QUALITY_EDGES))])
    noun = NOUNS[category]
    return {"title": f"{tastes[0].capitalize()} {tastes[1]} {noun}",
            "description": f"{_article(quality).capitalize()} {quality} {noun}: "
                           f"{', '.join(tastes[:-1])} and {tastes[-1]}."}


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def user_text(vector: np.ndarray, words: np.random.Generator) -> str:
    """A user's `about` text: what they like, in the same words that describe items."""
    first, second, third = _pole_words(vector, words, 3)
    return f"I enjoy {first}, {second} things, and anything {third}."


def read_oracle(path: str) -> Dict[str, np.ndarray]:
    """Reads `oracle.csv` into {column: array}, impression ids under `impression_id`."""
    data = np.genfromtxt(path, delimiter=",", names=True, dtype=None, encoding="utf-8")
    return {name: data[name] for name in data.dtype.names}
