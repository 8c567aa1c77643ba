"""Data processing at scale: ingestion + Transform wall time, events/s and peak RSS at growing sizes.

    python bench/pipeline_scale.py --impressions 1000000 2000000 --out bench/results/pipeline_scale.json

For each size: generates the seeded synthetic log (not timed), then runs the pipeline's own
LogExampleGen -> ImportSchemaGen -> Transform with LocalDagRunner in a fresh process, with the
config's `beam_args` (or `--beam-args`), sampling the resident memory of that process and all its
children (Beam's workers included) every 0.2 s, and the peak within each component's run. Component
times come from MLMD. Writes JSON with
time(largest)/time(smallest) against the size ratio, and a chart beside it.
Goals (the speed issue's): time(2M)/time(1M) <= 2.05; peak RSS <= 2.5 GB at 2M.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time

import psutil

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)
from bench import machine  # noqa: E402

GOALS = {"time_ratio_2x_size": 2.05, "peak_rss_gb": 2.5}
STAGES = ("LogExampleGen", "ImportSchemaGen", "Transform")


def run_child(data_dir: str, work_dir: str, beam_args: list) -> dict:
    """In the measured process: the pipeline's ingest -> schema -> Transform prefix, then MLMD times."""
    import mtrec  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
    import ml_metadata as mlmd
    from ml_metadata.proto import metadata_store_pb2
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner
    from tfx.orchestration.metadata import sqlite_metadata_connection_config
    from tfx.orchestration.pipeline import Pipeline

    from mtrec.config import DataConfig, PipelineConfig
    from mtrec.pipeline.pipeline import example_gen, schema_gen, transform_component
    from mtrec.pipeline.runner import patch_beam_and_tfx

    patch_beam_and_tfx()  # as `mtrec run`

    config = PipelineConfig(name="mtrec-scale", data=DataConfig(source="events", path=data_dir), beam_args=beam_args)
    ingest = example_gen(config, data_dir)
    schema = schema_gen(config, None)
    transform = transform_component(config, ingest.outputs["examples"], schema.outputs["schema"])
    metadata = os.path.join(work_dir, "metadata.db")
    started = time.time()
    LocalDagRunner().run(Pipeline(
        pipeline_name=config.name, pipeline_root=os.path.join(work_dir, "pipeline"),
        components=[ingest, schema, transform], enable_cache=False, beam_pipeline_args=beam_args,
        metadata_connection_config=sqlite_metadata_connection_config(metadata)))
    wall = time.time() - started
    connection = metadata_store_pb2.ConnectionConfig()
    connection.sqlite.filename_uri = metadata
    store = mlmd.MetadataStore(connection)
    types = {t.id: t.name for t in store.get_execution_types()}
    windows = {}
    for execution in store.get_executions():
        name = next(s for s in STAGES if types[execution.type_id].endswith(s))
        windows[name] = (execution.create_time_since_epoch / 1e3, execution.last_update_time_since_epoch / 1e3)
    return {"wall_s": round(wall, 1), "stages_s": {k: round(end - start, 1) for k, (start, end) in windows.items()},
            "windows": windows}


def measure(impressions: int, work_root: str, beam_args: list) -> dict:
    from mtrec.data import synthetic

    data_dir = os.path.join(work_root, f"logs-{impressions}")
    if not os.path.exists(os.path.join(data_dir, "oracle.csv")):
        print(f"generating {impressions} impressions ...", file=sys.stderr, flush=True)
        synthetic.generate(data_dir, synthetic.SyntheticLogSpec(impressions=impressions, seed=0))
    with open(os.path.join(data_dir, "events.jsonl"), "rb") as f:
        events = sum(1 for _ in f)
    work_dir = os.path.join(work_root, f"run-{impressions}")
    subprocess.run(["rm", "-rf", work_dir], check=True)
    os.makedirs(work_dir)
    out = os.path.join(work_dir, "child.json")
    print(f"ingest + Transform of {impressions} impressions ({events} events), beam args {beam_args} ...",
          file=sys.stderr, flush=True)
    child = subprocess.Popen([sys.executable, __file__, "--child", data_dir, work_dir, out,
                              f"--beam-args={shlex.join(beam_args)}"])
    samples, process = [], psutil.Process(child.pid)  # (time, RSS of the process tree)
    while child.poll() is None:
        try:
            tree = [process, *process.children(recursive=True)]
            samples.append((time.time(), sum(p.memory_info().rss for p in tree if p.is_running())))
        except psutil.Error:
            pass
        time.sleep(0.2)
    peak = max((rss for _, rss in samples), default=0)
    if child.returncode:
        raise SystemExit(f"the pipeline failed on {impressions} impressions (exit {child.returncode})")
    with open(out) as f:
        result = json.load(f)
    ingest_transform = sum(result["stages_s"].values())
    windows = result.pop("windows")
    stage_peaks = {stage: round(max((rss for t, rss in samples if start <= t <= end), default=0) / 2**30, 2)
                   for stage, (start, end) in windows.items()}
    return {"impressions": impressions, "events": events, **result, "ingest_transform_s": round(ingest_transform, 1),
            "events_per_s": round(events / ingest_transform), "peak_rss_gb": round(peak / 2**30, 2),
            "stage_peak_rss_gb": stage_peaks}


def plot(results: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = results["runs"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    sizes = [r["impressions"] / 1e6 for r in runs]
    bottom = [0.0] * len(runs)
    for stage in STAGES:
        values = [r["stages_s"].get(stage, 0) for r in runs]
        left.bar([f"{s:g}M" for s in sizes], values, bottom=bottom, label=stage)
        bottom = [b + v for b, v in zip(bottom, values)]
    left.set_ylabel("seconds"), left.set_title("ingest + Transform wall time"), left.legend()
    right.bar([f"{s:g}M" for s in sizes], [r["peak_rss_gb"] for r in runs], color="tab:gray")
    right.axhline(GOALS["peak_rss_gb"], color="tab:red", linestyle="--", label="goal")
    right.set_ylabel("GB"), right.set_title("peak RSS (process tree)"), right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--impressions", type=int, nargs="+", default=[1_000_000, 2_000_000])
    parser.add_argument("--work-dir", default=os.path.join(ROOT, "work", "bench-scale"))
    parser.add_argument("--beam-args", help="Beam args as one string (--beam-args='--a=1 --b=2'); default: the "
                        "config's beam_args")
    parser.add_argument("--out", help="JSON file to write (a PNG is written beside it)")
    parser.add_argument("--child", nargs=3, metavar=("DATA", "WORK", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.beam_args is not None:
        beam_args = shlex.split(args.beam_args)
    else:
        from mtrec.config import PipelineConfig
        beam_args = PipelineConfig().beam_args
    if args.child:
        result = run_child(args.child[0], args.child[1], beam_args)
        with open(args.child[2], "w") as f:
            json.dump(result, f)
        return
    if not args.out:
        parser.error("--out is required")
    runs = [measure(n, os.path.abspath(args.work_dir), beam_args) for n in sorted(args.impressions)]
    small, large = runs[0], runs[-1]
    results = {
        "machine": machine.describe(),
        "beam_args": beam_args, "runs": runs, "goals": GOALS,
        "time_ratio": round(large["ingest_transform_s"] / small["ingest_transform_s"], 3),
        "size_ratio": round(large["impressions"] / small["impressions"], 3),
        "max_peak_rss_gb": max(r["peak_rss_gb"] for r in runs)}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)
    plot(results, os.path.splitext(args.out)[0] + ".png")
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
