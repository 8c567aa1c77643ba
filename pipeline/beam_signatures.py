"""Beam's DoFn signature inspection, memoized per function: the same answers, computed once.

Beam asks `inspect.signature` about every method of a DoFn (some 85 of them) each time it checks
whether the DoFn is stateful: when a transform is applied, turned into its runner-API proto and
unpickled into a bundle processor. The main job (TFT's and TFMA's pipelines are built of hundreds
of DoFns) makes 15,068 such checks: 21.2 s of a 5-minute run on 2 cores, and 6.0 s with each
function's answer remembered (timed inside two runs; README, the main job). Beam's own author proposed
the same memoization (apache/beam#9925, closed unmerged).

A signature is a property of the function, so the answer is keyed by the function object (for a
bound method, its function: `self` does not change the parameters after it) and held weakly, so
pipelines built one after another in a process do not keep their closures alive. Callables of
any other kind are asked every time, as Beam does.
"""
from __future__ import annotations

import types
import weakref

from apache_beam.transforms import core

_BEAM_ANSWER = core.get_function_args_defaults
_BOUND: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_PLAIN: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def function_args_defaults(f):
    """`core.get_function_args_defaults(f)`, remembered per function; fresh lists each call, as
    Beam's callers may change them."""
    if isinstance(f, types.MethodType) and isinstance(f.__func__, types.FunctionType):
        table, key = _BOUND, f.__func__
    elif isinstance(f, types.FunctionType):
        table, key = _PLAIN, f
    else:
        return _BEAM_ANSWER(f)
    answer = table.get(key)
    if answer is None:
        answer = table[key] = _BEAM_ANSWER(f)
    args, defaults = answer
    return list(args), list(defaults)


def memoize() -> None:
    """Makes Beam's DoFn inspection use `function_args_defaults`, in this process (idempotent).
    Called before a local run; remote workers keep Beam's own."""
    core.get_function_args_defaults = function_args_defaults
