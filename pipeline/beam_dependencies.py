"""TFX's Beam dependency package: never for Beam's DirectRunner, built once per process otherwise.

Each Beam-powered TFX executor given any Beam args (`mtrec run` always gives some) copies TFX's
installed package into a new temporary directory and builds an sdist of it for remote workers to
install (`tfx.utils.dependency_utils.build_ephemeral_package`): 1.6-2.0 s per component here, five
times a main job, and each copy (49 MB) stays in the temporary directory for good (918 of them,
45 GB, had piled up on one machine). DirectRunner's workers run in this environment and need no
package, so for it the Beam args are left as they are; any other runner gets the package built
once per process and removed when the process ends.
"""
from __future__ import annotations

import atexit
import functools
import pathlib
import shutil
import threading

from apache_beam.options.pipeline_options import PipelineOptions
from tfx.utils import dependency_utils

_TFX_FLAGS = dependency_utils.make_beam_dependency_flags
_TFX_BUILD = dependency_utils.build_ephemeral_package
_LOCK = threading.Lock()  # TFX's build changes the process's working directory: one at a time
LOCAL_RUNNERS = ("directrunner", "bundlebaseddirectrunner")


def is_local(beam_pipeline_args) -> bool:
    """Whether the args run Beam's DirectRunner (the default runner), whose workers share this
    environment. Runner names as Beam reads them: any case, `Runner` optional."""
    runner = (PipelineOptions(flags=list(beam_pipeline_args)).get_all_options().get("runner") or "direct").lower()
    return (runner if runner.endswith("runner") else runner + "runner") in LOCAL_RUNNERS


def dependency_flags(beam_pipeline_args):
    """`make_beam_dependency_flags`, which adds `--extra_package=<TFX sdist>` for remote workers;
    DirectRunner's args as they are."""
    if is_local(beam_pipeline_args):
        return beam_pipeline_args
    with _LOCK:
        return _TFX_FLAGS(beam_pipeline_args)


@functools.lru_cache(maxsize=None)
def ephemeral_package() -> str:
    """TFX's sdist, built on first use in this process (TFX calls it only from the flags, under
    `_LOCK`) and removed at its exit."""
    path = _TFX_BUILD()  # <mkdtemp>/build/tfx/dist/<sdist>
    atexit.register(shutil.rmtree, pathlib.Path(path).parents[3], ignore_errors=True)
    return path


def apply() -> None:
    """Makes TFX's Beam executors in this process use `dependency_flags` (idempotent)."""
    dependency_utils.make_beam_dependency_flags = dependency_flags
    dependency_utils.build_ephemeral_package = ephemeral_package
