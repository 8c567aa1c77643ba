"""Beam's pipeline-option views, remembered per options object: the same views, made once.

`PipelineOptions.view_as(cls)` builds a new `cls` object each call, parsing the flags with a new
argparse parser of every option the class knows: 0.4-0.5 ms a view on 2 cores. Beam 2.74 asks for
a view each time it applies a transform and each time it compares two type hints (to read
`--disable_beartype`, apache/beam#38275): 8,626 views while a run on 2,000 impressions built its
pipelines, about 4 s. A view keeps nothing of its own but what it parsed from the flags: it reads
and writes its options object's shared `_all_options`, so a view handed out again reads and writes
what a new one would. Views are remembered per class and flags (a caller may extend the flags
list), and only as long as their options object lives.
"""
from __future__ import annotations

import weakref

from apache_beam.options.pipeline_options import PipelineOptions

_BEAM_VIEW_AS = PipelineOptions.view_as
_VIEWS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # options -> {(class, flags): view}


def view_as(options: PipelineOptions, cls):
    """`options.view_as(cls)`, made once per class and flags."""
    key = (cls, None if options._flags is None else tuple(options._flags))
    views = _VIEWS.setdefault(options, {})
    view = views.get(key)
    if view is None:
        view = views[key] = _BEAM_VIEW_AS(options, cls)
    return view


def memoize() -> None:
    """Makes `PipelineOptions.view_as` remember its views, in this process (idempotent). Called
    before a local run, as `beam_signatures.memoize`."""
    PipelineOptions.view_as = view_as
