"""Spans: daily log folders (`LOGS/YYYY-MM-DD/`) as TFX spans, and the resolver that picks them.

A span's number is TFX's for a date pattern (`{YYYY}-{MM}-{DD}`): days since 1970-01-01, what
ExampleGen's driver records on the Examples it writes (`span` property). The pipeline's rolling
window and drift check ask MLMD for the newest artifact of each span in a range: a span ingested
by an earlier run is reused, never read again.
"""
from __future__ import annotations

import datetime
import os
import re
from typing import Dict, List

import tensorflow as tf
from tfx import types
from tfx.types import standard_artifacts
from tfx.components.example_gen import utils
from tfx.dsl.components.common import resolver
from tfx.dsl.input_resolution.strategies.latest_blessed_model_strategy import LatestBlessedModelStrategy

DATE_PATTERN = "{YYYY}-{MM}-{DD}"
LATEST = "latest"
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def span_number(date: str) -> int:
    """TFX's span number of a `YYYY-MM-DD` date; ValueError naming it if it is not one."""
    try:
        day = datetime.date.fromisoformat(date)
    except ValueError:
        raise ValueError(f"span {date!r}: expected a date, YYYY-MM-DD, or {LATEST!r}") from None
    return utils.date_to_span_number(day.year, day.month, day.day)


def span_date(span: int) -> str:
    return str(datetime.date(1970, 1, 1) + datetime.timedelta(days=span))


def day_folders(logs_dir: str) -> List[str]:
    """The `YYYY-MM-DD` folder names under `logs_dir`, oldest first."""
    names = [os.path.basename(p.rstrip("/")) for p in tf.io.gfile.glob(os.path.join(logs_dir, "*"))]
    return sorted(n for n in names if _DAY.fullmatch(n) and tf.io.gfile.isdir(os.path.join(logs_dir, n)))


def resolve_span(logs_dir: str, span: str) -> str:
    """The day folder `span` names (`latest`: the newest); FileNotFoundError naming what is missing."""
    days = day_folders(logs_dir)
    if not days:
        raise FileNotFoundError(f"--span {span}: {logs_dir} has no YYYY-MM-DD folders (a daily log: "
                                "`mtrec generate-logs --layout daily`)")
    if span == LATEST:
        return days[-1]
    span_number(span)
    if span not in days:
        raise FileNotFoundError(f"--span {span}: no folder {os.path.join(logs_dir, span)} (have {days[0]} .. {days[-1]})")
    return span


def artifact_span(artifact: types.Artifact) -> int:
    """The span ExampleGen's driver wrote (a custom property) or a component copied (the property)."""
    if artifact.has_custom_property(utils.SPAN_PROPERTY_NAME):
        return artifact.get_int_custom_property(utils.SPAN_PROPERTY_NAME)
    return getattr(artifact, "span", 0) or 0


class SpanWindowStrategy(resolver.ResolverStrategy):
    """The newest artifact of each span in [first_span, last_span], the last `num_spans` of those
    spans, newest first: a rerun's artifacts replace an earlier run's of the same span instead of
    counting twice. Empty lists when none is there (the first day has no previous span)."""

    def __init__(self, first_span: int, last_span: int, num_spans: int):
        self.first_span, self.last_span, self.num_spans = first_span, last_span, num_spans

    def resolve_artifacts(self, store, input_dict: Dict[str, List[types.Artifact]]) -> Dict[str, List[types.Artifact]]:
        resolved = {}
        for key, artifacts in input_dict.items():
            newest = {}
            for artifact in sorted(artifacts, key=lambda a: a.id):
                span = artifact_span(artifact)
                if self.first_span <= span <= self.last_span:
                    newest[span] = artifact
            resolved[key] = [newest[span] for span in sorted(newest, reverse=True)[:self.num_spans]]
        return resolved


class BlessedBeforeSpanStrategy(LatestBlessedModelStrategy):
    """The latest blessed model trained on spans before `span` (the Trainer records its newest as
    the model's `span`): yesterday's model for today's warm start and gate, also on a rerun of
    today, whose own model must not become its baseline (and the rerun stays cached)."""

    def __init__(self, span: int):
        self.span = span

    def resolve_artifacts(self, store, input_dict):
        earlier = {key: [a for a in artifacts if not isinstance(a, standard_artifacts.Model)
                         or a.get_int_custom_property(utils.SPAN_PROPERTY_NAME) < self.span]
                   for key, artifacts in input_dict.items()}
        return super().resolve_artifacts(store, earlier)
