"""The run summary as people read it in a terminal: counts, one row per task, the outcome."""
from __future__ import annotations

from typing import Dict, List

from mtrec.task_types import TASK_TYPES, TaskType


def task_kind(metrics: Dict) -> TaskType:
    """A task's type, told by the gate metric its results carry."""
    return next(kind for kind in TASK_TYPES.values() if kind.gate_metric in metrics)


def _number(value, width: int = 9, digits: int = 4) -> str:
    return f"{value:>{width}.{digits}f}" if isinstance(value, (int, float)) else f"{'-':>{width}}"


def _task_rows(summary: Dict) -> List[str]:
    tasks, test = summary["tasks"], summary.get("test") or {}
    width = max([len("task")] + [len(name) for name in tasks]) + 2
    with_oracle = any("oracle_auc" in m for m in tasks.values())
    header = f"{'task':<{width}}{'metric':<9}{'eval':>9}" + (f"{'test':>9}" if test else "")
    header += f"{'oracle':>9}{'gap':>9}" if with_oracle else ""
    lines = [header + "   other", "-" * (len(header) + 8)]
    for task, metrics in tasks.items():
        kind = task_kind(metrics)
        gated, short = kind.gate_metric, kind.short
        row = f"{task:<{width}}{short:<9}{_number(metrics.get(gated))}"
        if test:
            row += _number(test.get(task, {}).get(gated))
        if with_oracle:
            row += _number(metrics.get("oracle_auc")) + _number(metrics.get("gap_to_oracle"))
        others = ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()
                           if k not in (gated, "oracle_auc", "gap_to_oracle", "slices", "example_count"))
        lines.append(f"{row}   {others}")
    return lines


def _missing_line(summary: Dict) -> List[str]:
    train = (summary.get("missing_values") or {}).get("train") or {}
    missing = {name: n for name, n in train.items() if n}
    if not missing:
        return []
    total = (summary.get("examples") or {}).get("train") or 0
    parts = ", ".join(f"{name} {n} ({100 * n / total:.1f}%)" if total else f"{name} {n}" for name, n in missing.items())
    return [f"Missing values in the train split: {parts}"]


def _text_line(summary: Dict) -> List[str]:
    text = summary.get("text")
    if not text:
        return []
    tables = ", ".join(f"{name} {t['with_text']} with text" + (f" ({t['missing'] + t['not_text']} without)"
                                                               if t["missing"] + t["not_text"] else "")
                       for name, t in text["tables"].items())
    return [f"Text: {tables}; {text['texts']} distinct texts, {text['texts_encoded']} encoded, "
            f"{text['texts_from_cache']} from the cache ({text['seconds']:.0f}s)"]


def _block(title: str, header: str, rows: Dict[str, str]) -> List[str]:
    """A table of one row per task, after a blank line and `title` (if any): `header` and each
    row's cells follow the task column."""
    width = max([len("task")] + [len(name) for name in rows]) + 2
    return ["", *([title] if title else []), f"{'task':<{width}}{header}"] + [
        f"{task:<{width}}{cells}" for task, cells in rows.items()]


def _cold_rows(summary: Dict) -> List[str]:
    rows = {}
    for task, metrics in (summary.get("cold_start") or {}).items():
        kind = task_kind(metrics)
        value, oracle = metrics.get(kind.gate_metric), metrics.get("oracle_auc")
        gap = oracle - value if isinstance(value, float) and isinstance(oracle, float) else None
        rows[task] = f"{kind.short:<9}{_number(value)}{_number(oracle)}{_number(gap)}{_number(metrics.get('examples'), 10, 0)}"
    header = f"{'metric':<9}{'cold':>9}{'oracle':>9}{'gap':>9}{'examples':>10}"
    return _block("Cold start: eval impressions of items no training example had", header, rows) if rows else []


def _ablation_rows(summary: Dict) -> List[str]:
    rows = {}
    for task, row in (summary.get("text_ablation") or {}).items():
        short = next(kind.short for kind in TASK_TYPES.values() if kind.gate_metric == row["metric"])
        rows[task] = (f"{short:<9}{_number(row['all']['with_text'])}{_number(row['all']['without_text'])}"
                      f"{_number(row['cold']['with_text'], 11)}{_number(row['cold']['without_text'])}")
    header = f"{'metric':<9}{'text':>9}{'no text':>9}{'cold text':>11}{'no text':>9}"
    title = "Text ablation: the same model without text features, on all eval impressions and the cold-start slice"
    return _block(title, header, rows) if rows else []


def format_summary(summary: Dict) -> str:
    """The per-task metrics table, blessing and push destination, for people."""
    lines = [f"\nExamples: {summary.get('examples')}"]
    if summary.get("dead_letter") is not None:
        dl = summary["dead_letter"]
        lines.append(f"Input lines: {summary['input_lines']}, accepted {summary['accepted_lines']}, "
                     f"dead-lettered {dl['total']} {dl['by_reason'] or ''} -> {dl['uri']}")
    lines += _missing_line(summary)
    lines += _text_line(summary)
    lines += [""] + _task_rows(summary)
    lines += _cold_rows(summary)
    lines += _ablation_rows(summary)
    if summary.get("stl"):
        lines += _block("", f"{'metric':<24}{'MTL':>9}{'STL':>9}{'delta':>9}", {
            task: f"{row['metric']:<24}{row['mtl']:>9.4f}{row['stl']:>9.4f}{row['delta']:>+9.4f}"
                  + ("  negative transfer" if row["negative_transfer"] else "")
            for task, row in summary["stl"].items()})
    if summary.get("tfrs_tutorial"):
        ours = summary.get("tfrs_comparison") or {"joint": {"top_100": summary.get("retrieval_top100"),
                                                            "rmse": summary.get("rmse")}}
        lines += ["", f"{'TFRS protocol':<16}{'tutorial top-100':>17}{'RMSE':>7}{'mtrec top-100':>15}{'RMSE':>9}"]
        for row, published in summary["tfrs_tutorial"].items():
            mine = ours.get(row, {})
            lines.append(f"{row:<16}{published['top_100']:>17.3f}{published['rmse']:>7.3f}"
                         f"{_number(mine.get('top_100'), 15, 3)}{_number(mine.get('rmse'), 9, 3)}")
    if summary.get("task_weights"):
        lines += ["", "Task weights in the last epoch: "
                  + ", ".join(f"{k}={v:.3g}" for k, v in summary["task_weights"][-1].items())]
    protocol = summary.get("split_protocol")
    if protocol:
        lines += ["", f"Splits by {protocol['by']}: trained on train, early stopping and gates on eval, "
                      f"reported on {' and '.join(protocol['reported'])}"]
    lines.append("")
    lines.append("BLESSED" if summary["blessed"] else "NOT BLESSED: " + "; ".join(summary["failed_gates"]))
    check = summary.get("serving_check")
    if check and not check["passed"]:
        lines.append(f"SERVING CHECK FAILED (the model does not load or answer as a model server would): "
                     f"{check['problem']}")
    lines.append(f"Pushed: {summary['pushed_model']}" if summary["pushed_model"] else "Nothing pushed.")
    return "\n".join(lines)
