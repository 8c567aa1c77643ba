"""Beam's DoFn inspection, memoized per function, gives Beam's own answers and keeps nothing alive."""
import gc
import weakref

import apache_beam as beam
from apache_beam.coders import VarIntCoder
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms import core, userstate
from apache_beam.transforms.timeutil import TimeDomain

from mtrec.pipeline import beam_signatures


class _RunningTotal(beam.DoFn):
    """Stateful: a bag per key and a timer, the parameters Beam finds by inspection."""
    TOTAL = userstate.BagStateSpec("total", VarIntCoder())
    FLUSH = userstate.TimerSpec("flush", TimeDomain.WATERMARK)

    def process(self, element, total=beam.DoFn.StateParam(TOTAL), flush=beam.DoFn.TimerParam(FLUSH),
                window=beam.DoFn.WindowParam):
        total.add(element[1])
        flush.set(window.end)

    @userstate.on_timer(FLUSH)
    def emit(self, key=beam.DoFn.KeyParam, total=beam.DoFn.StateParam(TOTAL)):
        yield key, sum(total.read())


def _specs(dofn):
    states, timers = userstate.get_dofn_specs(dofn)
    return sorted(s.name for s in states), sorted(t.name for t in timers)


def test_answers_are_beams_for_stateful_plain_and_wrapped_functions():
    def scale(x, factor=2):
        return x * factor

    dofns = [_RunningTotal(), beam.Map(scale).fn, beam.FlatMap(lambda x, t=beam.DoFn.TimestampParam: [x]).fn]
    for dofn in dofns:
        for name in ("process", "start_bundle", "setup"):
            method = getattr(dofn, name)
            assert beam_signatures.function_args_defaults(method) == beam_signatures._BEAM_ANSWER(method)
            assert beam_signatures.function_args_defaults(method) == beam_signatures._BEAM_ANSWER(method)  # remembered
    assert beam_signatures.function_args_defaults(scale) == (["x", "factor"], [2])
    args, defaults = beam_signatures.function_args_defaults(scale)
    args.append("changed by a caller")
    assert beam_signatures.function_args_defaults(scale) == (["x", "factor"], [2])

    core.get_function_args_defaults = beam_signatures._BEAM_ANSWER  # Beam's own, whatever ran before
    before = [_specs(dofn) for dofn in dofns]
    beam_signatures.memoize()
    assert [_specs(dofn) for dofn in dofns] == before == [(["total"], ["ts-flush"]), ([], []), ([], [])]


def test_a_stateful_pipeline_runs_the_same_with_the_memo():
    beam_signatures.memoize()
    with beam.Pipeline("DirectRunner", argv=["--direct_running_mode=in_memory"]) as p:
        totals = (p | beam.Create([("a", 1), ("b", 2), ("a", 3)]) | beam.ParDo(_RunningTotal()))
        assert_that(totals, equal_to([("a", 4), ("b", 2)]))


def test_a_function_is_not_kept_alive_by_the_memo():
    def closure_over(payload):
        return lambda x: (x, len(payload))

    f = closure_over(list(range(1000)))
    beam_signatures.function_args_defaults(f)
    assert f in beam_signatures._PLAIN
    collected = weakref.ref(f)
    del f
    gc.collect()
    assert collected() is None
