"""Runs the pipeline locally (LocalDagRunner or BeamDagRunner, on Beam's DirectRunner) and writes
`run_summary.json` and its plot, and appends the run to `history.jsonl` (`mtrec.reporting.history`)."""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import sys
import threading
import time
from typing import Callable, Dict, Optional

import absl.logging

from mtrec.components import spans
from mtrec.components.anomaly_gate import DataAnomalyError
from mtrec.components.log_example_gen import TABLES, input_files
from mtrec.config import PipelineConfig
from mtrec.data import movielens, synthetic
from mtrec.pipeline import beam_dependencies, beam_option_views, beam_signatures, distribution
from mtrec.pipeline.pipeline import PipelinePaths, create_pipeline
from mtrec.reporting import history
from mtrec.reporting.plot import plot_summary
from mtrec.reporting.summary import summarize
from mtrec.terminal import PROGRESS

SUMMARY_FILE = "run_summary.json"
PLOT_FILE = "run_summary.png"


class _ProgressHandler(logging.Handler):
    """Turns the DAG runners' 'Component X is running/finished' log lines into progress lines, shows
    mtrec's own progress lines (epochs, counts), and says every `heartbeat` seconds that a long
    stage is still running."""

    def __init__(self, emit: Callable[[str], None], heartbeat: float = 30.0):
        super().__init__(logging.INFO)
        self._emit, self._started, self.current = emit, {}, None
        self.seconds: Dict[str, float] = {}  # each finished component's wall time, in run order
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, args=(heartbeat,), daemon=True)
        self._ticker.start()

    def _tick(self, heartbeat: float):
        while not self._stop.wait(heartbeat):
            node = self.current
            elapsed = time.time() - self._started.get(node, time.time())
            if node is not None and elapsed >= heartbeat:
                self._emit(f"    {node} running for {elapsed:.0f}s")

    def close(self):
        self._stop.set()
        super().close()

    def emit(self, record):
        message = record.getMessage()
        if message.startswith(("Component ", "node ")) and message.endswith((" is running.", " is finished.")):
            node = message.split()[1]
            if message.endswith("running."):
                self._started[node], self.current = time.time(), node
                self._emit(f"  {node} ...")
            else:
                self.current = None
                self.seconds[node] = round(time.time() - self._started.get(node, time.time()), 1)
                self._emit(f"  {node} done in {self.seconds[node]:.1f}s")
        elif message.startswith(PROGRESS):
            self._emit(f"    {message[len(PROGRESS):]}")
        elif "A cached execution" in message:
            self._emit("    (reused from TFX cache)")


def synthetic_data_dir(config: PipelineConfig, work_dir: str) -> str:
    """Generates the default log once per (impressions, days, seed); reruns reuse it and TFX's cache."""
    data = config.data
    path = os.path.join(work_dir, "data", f"synthetic-{data.impressions}-{data.days}d-seed{data.seed}")
    if not os.path.exists(os.path.join(path, "oracle.csv")):
        synthetic.generate(path, synthetic.SyntheticLogSpec(impressions=data.impressions, days=data.days, seed=data.seed))
    return path


def movielens_data_dir(ml_dir: str, work_dir: str) -> str:
    """MovieLens 100K turned into an event log under the work dir, once."""
    movielens.check(ml_dir)
    path = os.path.join(work_dir, "data", "movielens-100k-events")
    if not os.path.exists(os.path.join(path, "events.jsonl")):
        shutil.rmtree(path, ignore_errors=True)
        movielens.to_event_log(ml_dir, path + ".tmp")
        os.replace(path + ".tmp", path)
    return path


def dag_runner(orchestrator: str):
    if orchestrator == "beam":
        from tfx.orchestration.beam.beam_dag_runner import BeamDagRunner
        return BeamDagRunner()
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner
    return LocalDagRunner()


def patch_beam_and_tfx() -> None:
    """What a run changes in Beam and TFX, in its own process (each idempotent): DoFn signatures and
    option views made once, and no TFX sdist for Beam's DirectRunner."""
    beam_signatures.memoize()
    beam_option_views.memoize()
    beam_dependencies.apply()


def run(config: PipelineConfig, work_dir: str, data_dir: Optional[str] = None,
        progress: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True)) -> Dict:
    """Runs the whole pipeline; returns (and writes to `work_dir/run_summary.json`) the run summary."""
    work_dir = os.path.abspath(work_dir)
    # Before any component touches TensorFlow: LocalDagRunner runs them all in this process.
    distribution.configure_logical_cpus(config.training.logical_cpu_devices)
    distribution.configure_threads(config.training)
    patch_beam_and_tfx()
    if config.data.source == "synthetic":
        progress(f"Generating the synthetic log ({config.data.impressions} impressions) ...")
        data_dir = synthetic_data_dir(config, work_dir)
    elif config.data.source == "movielens-100k":
        progress(f"Turning MovieLens 100K in {data_dir or config.data.path} into an event log ...")
        data_dir = movielens_data_dir(os.path.abspath(data_dir or config.data.path), work_dir)
    data_dir = os.path.abspath(data_dir or config.data.path)
    if not os.path.isdir(data_dir):
        raise FileNotFoundError(f"data directory {data_dir} does not exist")
    tables_dir = data_dir
    if config.data.span:  # a daily log: `latest` becomes the newest day's date, here and in the pipeline
        day = spans.resolve_span(data_dir, config.data.span)
        config = dataclasses.replace(config, data=dataclasses.replace(config.data, span=day))
        tables_dir = os.path.join(data_dir, day)
    if config.data.source != "examples":
        for table in TABLES:
            input_files(tables_dir, table, config.data.format)
    paths = PipelinePaths(root=os.path.join(work_dir, "pipeline"), data=data_dir,
                          serving=os.path.join(work_dir, "serving"), metadata=os.path.join(work_dir, "metadata.db"))
    progress(f"Running pipeline {config.name!r} on {data_dir}")
    # Set through absl's verbosity flag, not the logger: TensorFlow's SavedModel writer restores
    # the flag's value after muting it, which would otherwise silence progress from then on.
    absl_logger, handler = logging.getLogger("absl"), _ProgressHandler(progress)
    previous = absl.logging.get_verbosity(), absl_logger.propagate
    absl.logging.set_verbosity(absl.logging.INFO)
    absl_logger.addHandler(handler)
    absl_logger.propagate = False
    started = time.time()
    try:
        dag_runner(config.orchestrator).run(create_pipeline(config, paths))
    except DataAnomalyError as error:  # the day's data stopped the run: in the history too
        history.append(work_dir, history.stopped(config, error, round(time.time() - started, 1)))
        error.mtrec_component = handler.current
        raise
    except Exception as error:
        error.mtrec_component = handler.current  # where it failed, for the error paragraph
        raise
    finally:
        handler.close()
        absl_logger.removeHandler(handler)
        absl.logging.set_verbosity(previous[0])
        absl_logger.propagate = previous[1]
    summary = summarize(paths.metadata, config, tables_dir)
    summary["wall_time_s"] = round(time.time() - started, 1)
    summary["stage_seconds"] = handler.seconds  # a component TFX's cache served takes about 0 s
    summary["plot"] = plot_summary(summary, os.path.join(work_dir, PLOT_FILE))
    with open(os.path.join(work_dir, SUMMARY_FILE), "w") as f:
        json.dump(summary, f, indent=1, sort_keys=False)
    history.append(work_dir, history.line(config, summary))
    return summary
