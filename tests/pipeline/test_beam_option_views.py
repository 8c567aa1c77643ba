"""Beam's option views, made once per options object, read and write what Beam's own views do."""
import gc
import weakref

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import (DebugOptions, DirectOptions, PipelineOptions, SetupOptions,
                                                  StandardOptions, TypeOptions)
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.typehints import typehints
from apache_beam.typehints.decorators import TypeCheckError

from mtrec.pipeline import beam_option_views

FLAGS = ["--direct_running_mode=in_memory", "--experiments=a", "--disable_beartype", "--unknown_flag=1"]
CLASSES = (StandardOptions, DirectOptions, DebugOptions, SetupOptions, TypeOptions)


@pytest.fixture
def memoized():
    """The memo for one test, Beam's own `view_as` back after it (whatever ran before)."""
    beam_option_views.memoize()
    yield
    PipelineOptions.view_as = beam_option_views._BEAM_VIEW_AS


def _values(view) -> dict:
    return {name: getattr(view, name) for name in view._visible_option_list()}


def test_views_read_what_beams_own_read(memoized):
    options = PipelineOptions(FLAGS)
    for cls in CLASSES:
        view = options.view_as(cls)
        assert type(view) is cls and options.view_as(cls) is view  # made once
        assert _values(view) == _values(beam_option_views._BEAM_VIEW_AS(PipelineOptions(FLAGS), cls))
    assert options.view_as(DirectOptions).direct_running_mode == "in_memory"
    assert options.view_as(TypeOptions).disable_beartype is True


def test_a_write_through_a_view_reaches_every_view_and_the_options(memoized):
    options = PipelineOptions(FLAGS)
    options.view_as(StandardOptions).runner = "DirectRunner"
    options.view_as(DebugOptions).add_experiment("b")
    assert beam_option_views._BEAM_VIEW_AS(options, StandardOptions).runner == "DirectRunner"
    assert beam_option_views._BEAM_VIEW_AS(options, DebugOptions).experiments == ["a", "b"]
    assert options.get_all_options()["runner"] == "DirectRunner"


def test_extended_flags_get_a_new_view(memoized):
    flags = ["--direct_running_mode=in_memory"]
    options = PipelineOptions(flags)
    before = options.view_as(TypeOptions)
    assert before.disable_beartype is False
    flags.append("--disable_beartype")  # the list the options object holds
    after = options.view_as(TypeOptions)
    assert after is not before
    assert _values(after) == _values(beam_option_views._BEAM_VIEW_AS(options, TypeOptions))


def test_an_options_object_is_not_kept_alive(memoized):
    options = PipelineOptions(FLAGS)
    options.view_as(StandardOptions)
    gone = weakref.ref(options)
    del options
    gc.collect()
    assert gone() is None


def test_a_typed_pipeline_runs_and_type_checks_the_same(memoized):
    with beam.Pipeline("DirectRunner", argv=FLAGS[:1]) as p:
        lengths = p | beam.Create(["a", "bb"]) | beam.Map(len).with_output_types(int)
        assert_that(lengths, equal_to([1, 2]))
    with pytest.raises(TypeCheckError, match="requires PCollections of type .*int.* but was applied to .*str"):
        with beam.Pipeline("DirectRunner", argv=FLAGS[:1]) as p:
            _ = p | beam.Create(["a"]).with_output_types(str) | beam.Map(lambda x: x).with_input_types(int)
    assert typehints.is_consistent_with(int, float)
