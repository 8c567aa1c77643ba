"""The `mtrec` command line.

    mtrec generate-logs --out DIR          write the seeded synthetic interaction log
    mtrec run --work-dir W                 raw logs -> TFX pipeline -> blessed model pushed for TF Serving
    mtrec config                           print the default configuration as YAML
"""
from __future__ import annotations

import argparse
import sys
from typing import List, Optional

import mtrec  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from mtrec.config import ARCHITECTURES, ORCHESTRATORS, ConfigError, PipelineConfig


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

    run = commands.add_parser("run", help="run the whole TFX pipeline locally",
                              description="Ingest, validate, transform, train, evaluate per task and push, "
                                          "with TFX's LocalDagRunner (or BeamDagRunner) and Beam's DirectRunner. Writes "
                                          "WORK_DIR/run_summary.json and pushes blessed models to "
                                          "WORK_DIR/serving/MODEL_NAME/VERSION.")
    run.add_argument("--work-dir", required=True, help="pipeline root, MLMD store, serving dir and summary")
    run.add_argument("--logs", help="directory of raw event logs (events*, items*, users*); default: synthetic")
    run.add_argument("--config", help="YAML config (see `mtrec config`); flags below override it")
    run.add_argument("--impressions", type=int, help="size of the generated synthetic log")
    run.add_argument("--model", choices=ARCHITECTURES, help="architecture")
    run.add_argument("--epochs", type=int, help="maximum training epochs")
    run.add_argument("--orchestrator", choices=ORCHESTRATORS,
                     help="TFX LocalDagRunner (default) or BeamDagRunner")

    commands.add_parser("config", help="print the default configuration as YAML")
    return parser


def load_config(args) -> PipelineConfig:
    raw = PipelineConfig.load(args.config).to_dict() if args.config else PipelineConfig().to_dict()
    if args.logs:
        raw["data"].update(source="events", path=args.logs)
    if args.impressions is not None:
        raw["data"]["impressions"] = args.impressions
    if args.model:
        raw["model"]["architecture"] = args.model
    if args.epochs is not None:
        raw["training"]["epochs"] = args.epochs
    if args.orchestrator:
        raw["orchestrator"] = args.orchestrator
    return PipelineConfig.from_dict(raw)


def format_summary(summary: dict) -> str:
    """The per-task metrics table, blessing and push destination, for people."""
    lines = [f"\nExamples: {summary.get('examples')}"]
    if summary.get("dead_letter") is not None:
        dl = summary["dead_letter"]
        lines.append(f"Input lines: {summary['input_lines']}, accepted {summary['accepted_lines']}, "
                     f"dead-lettered {dl['total']} {dl['by_reason'] or ''} -> {dl['uri']}")
    header = f"{'task':<12}{'metric':<10}{'value':>9}{'oracle':>9}{'gap':>9}   other"
    lines += ["", header, "-" * len(header)]
    for task, metrics in summary["tasks"].items():
        gated = "auc" if "auc" in metrics else "root_mean_squared_error"
        oracle = metrics.get("oracle_auc")
        others = ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()
                           if k not in (gated, "oracle_auc", "gap_to_oracle", "slices", "example_count"))
        lines.append(f"{task:<12}{'auc' if gated == 'auc' else 'rmse':<10}{metrics.get(gated, float('nan')):>9.4f}"
                     f"{oracle if oracle is not None else float('nan'):>9.4f}"
                     f"{metrics.get('gap_to_oracle', float('nan')):>9.4f}   {others}")
    lines.append("")
    lines.append("BLESSED" if summary["blessed"] else "NOT BLESSED: " + "; ".join(summary["failed_gates"]))
    lines.append(f"Pushed: {summary['pushed_model']}" if summary["pushed_model"] else "Nothing pushed.")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "config":
            print(PipelineConfig().to_yaml(), end="")
        elif args.command == "generate-logs":
            from mtrec.data import malformed, synthetic

            spec = synthetic.SyntheticLogSpec(impressions=args.impressions, days=args.days, seed=args.seed,
                                              task_correlation=args.task_correlation, gzip=args.gzip)
            counts = synthetic.generate(args.out, spec)
            if args.malformed:
                if args.gzip:
                    raise ConfigError("--malformed works on plain events.jsonl; drop --gzip")
                counts["malformed"] = dict(malformed.inject(f"{args.out}/events.jsonl", args.malformed, args.seed))
            print(f"Wrote {args.out}: {counts}")
        elif args.command == "run":
            from mtrec.components.anomaly_gate import DataAnomalyError
            from mtrec.pipeline import runner

            config = load_config(args)
            try:
                summary = runner.run(config, args.work_dir, data_dir=args.logs)
            except DataAnomalyError as e:
                print(f"mtrec run: stopped: {e}", file=sys.stderr)
                return 3
            print(format_summary(summary))
            print(f"Summary: {args.work_dir}/{runner.SUMMARY_FILE}")
    except (ConfigError, FileNotFoundError, ValueError) as e:
        print(f"mtrec {args.command}: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
