"""The `mtrec` command line.

    mtrec generate-logs --out DIR          write the seeded synthetic interaction log
    mtrec run --work-dir W                 raw logs -> TFX pipeline -> blessed model pushed for TF Serving
    mtrec run --logs DIR --span latest     a daily log's newest day: window, warm start, drift check
    mtrec history --work-dir W             the runs of a work dir, a row (and a plot point) each
    mtrec skew --requests DIR --work-dir W logged serving requests against the training data
    mtrec data movielens-100k --out DIR    download MovieLens 100K (GroupLens) for `run --dataset`
    mtrec config [--from-table FILE]       print the default configuration (or a table's draft) as YAML
    mtrec embed --input F --field N --out F   a text field's MiniLM vectors, row by row
    mtrec serve --model-base-path DIR      serve the pushed versions over TF Serving's gRPC and REST APIs
    mtrec query --target H:P --json '{..}' task scores from TF Serving (real or `mtrec serve`)
    mtrec recommend --user-json .. --items F   top-K items by a blend of task scores
    mtrec kfp compile|upload|run|schedule  the pipeline on Kubeflow Pipelines
"""
from __future__ import annotations

import argparse
import os
import sys
import traceback
from typing import List, Optional

import mtrec  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from mtrec.config import (ARCHITECTURES, DATASETS, ORCHESTRATORS, PROTOCOLS, WEIGHTINGS,
                          ConfigError, PipelineConfig, dataset_preset, default_synthetic_text)
from mtrec.data.synthetic import DAILY_TASTE_DRIFT, LAYOUTS
from mtrec.reporting.table import format_summary
from mtrec.serving import commands as serving_commands


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mtrec",
        description="Multi-task recommendation with TFX: from raw interaction logs to a per-task-gated "
                    "model in the TF Serving layout.",
        epilog="Start with `mtrec run --work-dir /tmp/mtrec`: it generates a synthetic log and runs the "
               "whole pipeline on it. `mtrec COMMAND --help` explains each command.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    gen = commands.add_parser("generate-logs", help="write a seeded synthetic interaction log",
                              description="Write events.jsonl (impressions, clicks, likes, purchases, dwell; "
                                          "unjoined, in time order), items.jsonl, users.jsonl and oracle.csv "
                                          "(true per-impression probabilities).")
    gen.add_argument("--out", required=True, help="directory to write into")
    gen.add_argument("--impressions", type=int, default=200_000, help="number of impressions (default 200000)")
    gen.add_argument("--days", type=int, default=7, help="days the log spans (default 7)")
    gen.add_argument("--seed", type=int, default=0, help="random seed; the same seed writes the same log")
    gen.add_argument("--task-correlation", type=float, default=0.5,
                     help="share of like/purchase signal common with click, 0..1 (default 0.5)")
    gen.add_argument("--gzip", action="store_true", help="write events.jsonl.gz")
    gen.add_argument("--malformed", type=int, default=0,
                     help="mix N malformed lines of every kind into the events, to see the dead-letter path")
    gen.add_argument("--layout", choices=LAYOUTS, default="flat",
                     help="flat: one log; daily: one folder per day, OUT/YYYY-MM-DD/, for `run --span`")
    gen.add_argument("--taste-drift", type=float,
                     help="daily step of each age group's tastes (default 0.05 with --layout daily, else 0)")
    gen.add_argument("--shift-day", type=int, default=-1,
                     help="a sharp shift on this day (0-based): most impressions from tablets, for the drift check")

    run = commands.add_parser("run", help="run the whole TFX pipeline locally",
                              description="Ingest, validate, transform, train, evaluate per task and push, "
                                          "with TFX's LocalDagRunner (or BeamDagRunner) and Beam's DirectRunner. Writes "
                                          "WORK_DIR/run_summary.json and pushes blessed models to "
                                          "WORK_DIR/serving/MODEL_NAME/VERSION.")
    run.add_argument("--work-dir", required=True, help="pipeline root, MLMD store, serving dir and summary")
    run.add_argument("--logs", help="directory of raw event logs (events*, items*, users*); default: synthetic")
    run.add_argument("--config", help="YAML config (see `mtrec config`); flags below override it")
    run.add_argument("--span", help="--logs is a daily log (YYYY-MM-DD folders): ingest this day's, `latest` or "
                                    "a date; trains on the last data.window_days days, warm-started")
    run.add_argument("--window-days", type=int, help="days the Trainer reads up to --span (data.window_days)")
    run.add_argument("--impressions", type=int, help="size of the generated synthetic log")
    run.add_argument("--dataset", choices=DATASETS, help="synthetic (default) or a public dataset's preset")
    run.add_argument("--data-dir", help="where the --dataset files are (MovieLens: u.data, u.user, u.item)")
    run.add_argument("--protocol", choices=[p for p in PROTOCOLS if p],
                     help="tfrs: the TFRS multitask tutorial's split, with its published figures beside ours")
    run.add_argument("--model", choices=ARCHITECTURES, help="architecture")
    run.add_argument("--weighting", choices=WEIGHTINGS, help="task-loss weighting")
    run.add_argument("--baselines", action="store_true",
                     help="also train one single-task model per task and compare each task with it")
    run.add_argument("--ablate-text", action="store_true",
                     help="also train the model without its text features and report each task with and "
                          "without them, on all eval impressions and on the cold-start slice")
    run.add_argument("--epochs", type=int, help="maximum training epochs")
    run.add_argument("--orchestrator", choices=ORCHESTRATORS,
                     help="TFX LocalDagRunner (default) or BeamDagRunner")
    run.add_argument("--beam-arg", action="append", dest="beam_args", metavar="ARG",
                     help="Beam pipeline argument, repeatable (replaces the config's beam_args), e.g. "
                          "--beam-arg=--direct_running_mode=multi_processing --beam-arg=--direct_num_workers=0")
    run.add_argument("-v", "--verbose", action="store_true",
                     help="show TensorFlow's, Beam's and TFX's own output too (default: in WORK_DIR/mtrec.log)")

    data = commands.add_parser("data", help="download a public dataset",
                               description="Download a public dataset for `mtrec run --dataset NAME --data-dir DIR`. "
                                           "MovieLens 100K comes from GroupLens under its license (no redistribution).")
    data.add_argument("dataset", choices=[d for d in DATASETS if d != "synthetic"])
    data.add_argument("--out", required=True, help="directory to write the files into")

    config = commands.add_parser("config", help="print the default configuration as YAML, or draft one for a table",
                                 description="Print the defaults as YAML; with --from-table, a config drafted from "
                                             "a ready example table's header and values (CSV or Parquet).")
    config.add_argument("--from-table", metavar="FILE", help="draft data, features and tasks from this table")
    config.add_argument("--labels", help="comma-separated label columns (default: 0/1 columns with a label-like name)")
    embed = commands.add_parser("embed", help="encode a text field of a JSONL/CSV file with the MiniLM encoder",
                                description="Write each row of FILE (JSONL or CSV) with `embedding`: the 384 floats "
                                            "all-MiniLM-L6-v2 gives its text field, in input order. Rows without "
                                            "the field get null; unreadable rows go to OUT.dead_letter.jsonl. "
                                            "The encoding runs on Beam (RunInference), DirectRunner by default.")
    embed.add_argument("--input", required=True, metavar="FILE", help="JSONL (one object a line) or CSV with a header")
    embed.add_argument("--field", required=True, metavar="NAME", help="the text field to encode")
    embed.add_argument("--out", required=True, metavar="FILE", help="JSONL to write")
    embed.add_argument("--max-length", type=int, default=64, help="tokens per text, [CLS] and [SEP] included")
    embed.add_argument("--batch-size", type=int, default=64)
    embed.add_argument("--encoder-path", help="a sentence-transformers BERT directory (default: the installed "
                                               "all-MiniLM-L6-v2 wheel's files)")
    embed.add_argument("--beam-arg", action="append", dest="beam_args", metavar="ARG",
                       help="Beam pipeline argument for the encoding job, repeatable (default: DirectRunner in this "
                            "process), e.g. --beam-arg=--runner=DataflowRunner")
    skew = commands.add_parser("skew", help="compare logged serving requests with the training data (TFDV)",
                               description="TFDV statistics of the requests `mtrec serve --request-log-dir` logged, "
                                           "against the training statistics of WORK_DIR's latest run: each feature's "
                                           "distance (L-infinity, Jensen-Shannon) and whether it is over the config's "
                                           "drift threshold. Exit status 1 when a feature is skewed.")
    skew.add_argument("--requests", required=True, help="the request log directory")
    skew.add_argument("--work-dir", required=True, help="the `mtrec run` work dir of the served model")
    skew.add_argument("--config", help="YAML config whose drift thresholds to use (default: the defaults)")
    skew.add_argument("--statistics", help="a StatisticsGen artifact URI instead of the latest run's")
    hist = commands.add_parser("history", help="print a work dir's runs and plot each task's metric over them",
                               description="One row per `mtrec run` in WORK_DIR/history.jsonl: span, warm start, "
                                           "each task's gated metric, blessed, features found drifting.")
    hist.add_argument("--work-dir", required=True)
    hist.add_argument("--plot", help="PNG to write (default WORK_DIR/history.png)")
    serving_commands.add_commands(commands)
    _kfp_parser(commands)
    return parser


def _kfp_parser(commands) -> None:
    kfp = commands.add_parser("kfp", help="compile, upload and run the pipeline on Kubeflow Pipelines",
                              description="The same pipeline on Kubeflow Pipelines: compiled with TFX's "
                                          "KubeflowV2DagRunner, run in the pipeline image (kubeflow/Dockerfile).")
    verbs = kfp.add_subparsers(dest="kfp_command", required=True, metavar="VERB")
    build = verbs.add_parser("compile", help="write pipeline.json (Vertex PipelineJob) and pipeline.yaml (OSS KFP)")
    build.add_argument("--output-dir", required=True, help="where to write pipeline.json and pipeline.yaml")
    build.add_argument("--config", help="YAML config (see `mtrec config`); flags below override it")
    build.add_argument("--data", help="URI of the raw logs the pods read (gs://...): events*, items*, users* files")
    build.add_argument("--pipeline-root", help="URI for the pipeline's artifacts (gs://...)")
    build.add_argument("--serving-dir", help="URI the Pusher writes versions under (default PIPELINE_ROOT/serving)")
    build.add_argument("--image", help="pipeline image every component runs in (default: kubeflow.image)")
    build.add_argument("--beam-arg", action="append", dest="beam_args", metavar="ARG",
                       help="Beam pipeline argument, repeatable (replaces the config's beam_args), e.g. "
                            "--beam-arg=--runner=DataflowRunner")
    build.add_argument("--trainer-cpu", type=float, help="Trainer pod CPU limit")
    build.add_argument("--trainer-memory-gb", type=float, help="Trainer pod memory limit (GB)")
    build.add_argument("--trainer-gpus", type=int, help="Trainer pod GPUs (use with training.strategy: mirrored)")
    for verb, text in (("upload", "upload a compiled pipeline.yaml to a KFP API server"),
                       ("run", "start a run of a compiled pipeline.yaml")):
        command = verbs.add_parser(verb, help=text)
        command.add_argument("--host", required=True, help="KFP API endpoint, e.g. http://127.0.0.1:8080")
        command.add_argument("--package", required=True, help="the compiled pipeline.yaml")
    every = verbs.add_parser("schedule", help="create a recurring run (daily) of a compiled pipeline.yaml")
    every.add_argument("--host", required=True, help="KFP API endpoint, e.g. http://127.0.0.1:8080")
    every.add_argument("--package", required=True, help="the compiled pipeline.yaml (compiled with data.span set)")
    every.add_argument("--cron", required=True, help="when, KFP's cron (seconds first; 5 fields get 0 seconds), "
                                                     "e.g. '0 0 6 * * *' for 06:00 every day")
    every.add_argument("--span", default="latest", help="run parameter: the day each run ingests (default latest)")
    every.add_argument("--experiment", default="mtrec", help="experiment to run in (default mtrec)")
    every.add_argument("--name", help="name of the recurring run (default PIPELINE-daily)")
    every.add_argument("--pipeline-root", help="override the compiled pipeline root (gs://...)")
    upload, start = verbs.choices["upload"], verbs.choices["run"]
    upload.add_argument("--name", help="pipeline name (default: the compiled one)")
    upload.add_argument("--version", help="add this version to an existing pipeline of that name")
    start.add_argument("--experiment", default="mtrec", help="experiment to run in (default mtrec)")
    start.add_argument("--run-name", help="name of the run")
    start.add_argument("--pipeline-root", help="override the compiled pipeline root (gs://...)")
    start.add_argument("--data-version", default="",
                       help="names the log drop (e.g. its date): a new value makes KFP's cache re-read the logs")


def kfp_command(args) -> int:
    from mtrec.kubeflow import pipelines

    if args.kfp_command == "compile":
        raw = PipelineConfig().to_dict()
        if args.config:
            _merge(raw, PipelineConfig.read_yaml(args.config))
        if args.data:
            raw["data"].update(path=args.data, source="events" if raw["data"]["source"] == "synthetic"
                               else raw["data"]["source"])
        for key in ("pipeline_root", "serving_dir", "image", "trainer_cpu", "trainer_memory_gb", "trainer_gpus"):
            if getattr(args, key) is not None:
                raw["kubeflow"][key] = getattr(args, key)
        if args.beam_args:
            raw["beam_args"] = args.beam_args
        json_path, yaml_path = pipelines.compile_pipeline(PipelineConfig.from_dict(raw), args.output_dir)
        print(f"Wrote {json_path} (KubeflowV2DagRunner PipelineJob) and {yaml_path} (OSS KFP pipeline spec)\n"
              f"{pipelines.summary(json_path)}")
    elif args.kfp_command == "schedule":
        print(f"Scheduled {args.package} on {args.host} ({args.cron}): recurring run "
              f"{pipelines.schedule(args.host, args.package, args.cron, args.experiment, args.name, args.span, args.pipeline_root)}")
    elif args.kfp_command == "upload":
        print(f"Uploaded {args.package} to {args.host}: pipeline id "
              f"{pipelines.upload(args.host, args.package, args.name, args.version)}")
    else:
        run_id = pipelines.run(args.host, args.package, args.experiment, args.run_name, args.pipeline_root,
                               {pipelines.DATA_VERSION: args.data_version} if args.data_version else None)
        print(f"Started run {run_id} on {args.host}")
    return 0


def load_config(args) -> PipelineConfig:
    """Defaults, then the --dataset preset, then the --config file, then flags; checked once at
    the end, so flags can complete the file (--baselines for `gate_against: single_task`). On the
    synthetic log, text features are on (its titles, descriptions and `about`s) unless the file
    sets `text.fields`."""
    raw = PipelineConfig().to_dict()
    if args.dataset or args.protocol:
        if args.protocol and args.dataset != "movielens-100k":
            raise ConfigError(f"--protocol {args.protocol} needs --dataset movielens-100k")
        if args.dataset != "synthetic" and not args.data_dir:
            raise ConfigError(f"--dataset {args.dataset} needs --data-dir (get it with `mtrec data {args.dataset} --out DIR`)")
        _merge(raw, dataset_preset(args.dataset, os.path.abspath(args.data_dir or ""), args.protocol or ""))
    from_file = PipelineConfig.read_yaml(args.config) if args.config else {}
    _merge(raw, from_file)
    if args.weighting:
        raw["model"]["weighting"] = args.weighting
    if args.baselines:
        raw["baselines"] = True
    if args.ablate_text:
        raw["text"]["ablation"] = True
    if args.logs:
        raw["data"].update(source="events", path=args.logs)
    if args.span:  # a day is one span: split it by impression id unless the file says otherwise
        raw["data"]["span"] = args.span
        if "split" not in (from_file.get("data") or {}):
            raw["data"]["split"] = "hash"
    if args.window_days is not None:
        raw["data"]["window_days"] = args.window_days
    if args.impressions is not None:
        raw["data"]["impressions"] = args.impressions
    if args.model:
        raw["model"]["architecture"] = args.model
    if args.epochs is not None:
        raw["training"]["epochs"] = args.epochs
    if args.orchestrator:
        raw["orchestrator"] = args.orchestrator
    if args.beam_args:
        raw["beam_args"] = args.beam_args
    default_synthetic_text(raw, from_file)  # the generated log's text, unless the file says
    return PipelineConfig.from_dict(raw)


def _merge(raw: dict, overrides: dict) -> None:
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            _merge(raw[key], value)
        else:
            raw[key] = value


def config_text(args) -> str:
    """The default config, or one drafted from a table, as YAML."""
    if not args.from_table:
        return PipelineConfig().to_yaml()
    import yaml

    from mtrec.data import draft

    if not os.path.isfile(args.from_table):
        raise FileNotFoundError(f"--from-table {args.from_table}: no such file")
    drafted = draft.draft(args.from_table, args.labels.split(",") if args.labels else None)
    left_out = drafted.pop("_left_out")
    if not drafted["tasks"]:
        raise ConfigError(f"--from-table {args.from_table}: no label column found; name them with --labels")
    raw = PipelineConfig().to_dict()
    _merge(raw, drafted)
    config = PipelineConfig.from_dict(raw)  # checked: the draft runs as it is
    header = (f"# Drafted from {args.from_table}; check every treatment and the gates before a real run.\n"
              + "".join(f"# left out: {line}\n" for line in left_out))
    full = config.to_dict()
    keep = {"data": {k: full["data"][k] for k in drafted["data"]}, "features": full["features"],
            "tasks": [{k: v for k, v in task.items() if k != "positive" or v} for task in full["tasks"]],
            "slices": full["slices"], "training": {k: full["training"][k] for k in drafted["training"]}}
    return header + yaml.safe_dump(keep, sort_keys=False)


def run_command(args) -> int:
    """`mtrec run`: progress and the table on the terminal, everything else in WORK_DIR/mtrec.log;
    a failure is one paragraph there and its trace in the log."""
    from mtrec.terminal import quiet_terminal

    config = load_config(args)  # a bad config is refused before TFX loads (seconds)
    os.makedirs(args.work_dir, exist_ok=True)
    log_path = os.path.join(args.work_dir, "mtrec.log")
    with quiet_terminal(log_path, args.verbose) as (out, err):
        print("Loading TensorFlow, Beam and TFX ...", file=err, flush=True)  # 6-8 s on 2 cores
        from mtrec.components.anomaly_gate import DataAnomalyError
        from mtrec.pipeline import runner

        try:
            summary = runner.run(config, args.work_dir, data_dir=args.logs,
                                 progress=lambda line: print(line, file=err, flush=True))
        except DataAnomalyError as e:
            traceback.print_exc()
            print(f"mtrec run: stopped before training: {e}\n(The full trace is in {log_path}.)", file=err)
            return 3
        except (ConfigError, FileNotFoundError) as e:
            traceback.print_exc()
            print(f"mtrec run: {e}", file=err)
            return 2
        except Exception as e:  # noqa: BLE001 - every failure gets a readable paragraph
            traceback.print_exc()
            print(failure_paragraph(e, log_path), file=err)
            return 1
        print(format_summary(summary), file=out)
        print(f"Summary: {args.work_dir}/{runner.SUMMARY_FILE}", file=out)
    return 0


def skew_command(args) -> int:
    import json

    from mtrec.components.data_check import load_schema, load_statistics
    from mtrec.reporting.summary import latest_run_outputs
    from mtrec.serving.skew import skew

    config = PipelineConfig.load(args.config) if args.config else PipelineConfig()
    outputs = latest_run_outputs(os.path.join(args.work_dir, "metadata.db"))
    statistics = args.statistics or outputs[("StatisticsGen", "statistics")].uri
    schema = outputs.get(("ImportSchemaGen", "schema")) or outputs[("SchemaGen", "schema")]
    report = skew(args.requests, load_statistics(statistics, "train"),
                  load_schema(schema.uri), config)
    for row in report["measurements"]:
        print(f"{row['feature']:<18} {row['measure']:<15} {row['distance']:8.4f}  threshold {row['threshold']:g}"
              f"{'  SKEWED' if row['skewed'] else ''}")
    print(json.dumps({k: report[k] for k in ("requests_examples", "skewed", "not_in_requests")}))
    return 1 if report["skewed"] else 0


def failure_paragraph(error: BaseException, log_path: str) -> str:
    """What failed, where, and what to do, in a few lines."""
    component = getattr(error, "mtrec_component", None)
    cause = error
    for _ in range(20):  # the innermost error says most
        if (cause.__cause__ or cause.__context__) is None:
            break
        cause = cause.__cause__ or cause.__context__
    message = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
    where = f" in the {component} component" if component else ""
    return (f"mtrec run failed{where}: {type(cause).__name__}: {message[:500]}\n"
            f"The full trace and the libraries' output are in {log_path}; `mtrec run -v` shows them as it runs.")


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command in serving_commands.COMMANDS:
            return serving_commands.run(args)
        if args.command == "kfp":
            return kfp_command(args)
        if args.command == "config":
            print(config_text(args), end="")
        elif args.command == "skew":
            return skew_command(args)
        elif args.command == "history":
            from mtrec.reporting import history

            entries = history.read(args.work_dir)
            print(history.table(entries))
            print(f"Plot: {history.plot(entries, args.plot or os.path.join(args.work_dir, 'history.png'))}")
        elif args.command == "generate-logs":
            from mtrec.data import malformed, synthetic

            drift = args.taste_drift if args.taste_drift is not None else DAILY_TASTE_DRIFT * (args.layout == "daily")
            spec = synthetic.SyntheticLogSpec(impressions=args.impressions, days=args.days, seed=args.seed,
                                              task_correlation=args.task_correlation, gzip=args.gzip,
                                              taste_drift=drift, shift_day=args.shift_day)
            if args.malformed and args.layout == "daily":
                raise ConfigError("--malformed works on a flat log; drop --layout daily")
            counts = synthetic.generate(args.out, spec, args.layout)
            if args.malformed:
                if args.gzip:
                    raise ConfigError("--malformed works on plain events.jsonl; drop --gzip")
                counts["malformed"] = dict(malformed.inject(f"{args.out}/events.jsonl", args.malformed, args.seed))
            print(f"Wrote {args.out}: {counts}")
        elif args.command == "data":
            from mtrec.data import movielens

            print(f"Wrote {movielens.download(args.out)} (MovieLens 100K, GroupLens; see its README for the license)")
        elif args.command == "run":
            return run_command(args)
        elif args.command == "embed":
            from mtrec.text.embed import embed_file

            counts = embed_file(args.input, args.field, args.out, args.max_length, args.batch_size, args.encoder_path,
                                progress=lambda line: print(line, file=sys.stderr, flush=True),
                                beam_args=args.beam_args)
            dead = counts["dead_letter"]
            print(f"Wrote {args.out}: {counts['embedded']} rows embedded, {counts['missing']} without {args.field!r}, "
                  f"{dead['total']} dead-lettered {dead['by_reason'] or ''}; {counts['texts_encoded']} distinct texts "
                  f"in {counts['seconds']}s")
    except (ConfigError, FileNotFoundError, ConnectionError, ValueError) as e:
        print(f"mtrec {args.command}: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
