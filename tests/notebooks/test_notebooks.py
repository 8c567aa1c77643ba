"""Both notebooks execute top to bottom on small data, and the accuracy benchmark writes its table.

The benchmark (one architecture x one weighting: each more is one more training) on the shared
small run (4,000 impressions, with single-task baselines) feeds notebook 02, as a user's
`bench/accuracy.py` run would.
"""
import json
import os
import subprocess
import sys

import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import SMALL_RUN

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
NOTEBOOKS = os.path.join(ROOT, "notebooks")


def _execute(name, tmp_path, env):
    notebook = nbformat.read(os.path.join(NOTEBOOKS, name), as_version=4)
    os.environ.update(env)
    try:
        NotebookClient(notebook, timeout=600, kernel_name="python3",
                       resources={"metadata": {"path": NOTEBOOKS}}).execute()
    finally:
        for key in env:
            os.environ.pop(key)
    return notebook


def _outputs(notebook):
    return "\n".join(o.get("text", "") + json.dumps(o.get("data", {}).get("text/plain", ""))
                     for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs)


def test_explore_logs_notebook_runs_on_a_small_log(tmp_path):
    notebook = _execute("01_explore_logs.ipynb", tmp_path,
                        {"MTREC_NOTEBOOK_DIR": str(tmp_path), "MTREC_NOTEBOOK_IMPRESSIONS": "3000"})
    text = _outputs(notebook)
    assert "rate given click" in text and "train examples in the statistics" in text
    images = [o for cell in notebook.cells for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) >= 2  # label rates and task correlation


@pytest.fixture(scope="module")
def accuracy_bench(small_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "accuracy.json"
    subprocess.run([sys.executable, os.path.join(ROOT, "bench", "accuracy.py"), "--out", str(out),
                    "--from-run", small_run.work_dir, "--config", small_run.config,
                    "--architectures", "esmm", "--weightings", "dwa", "--text", "with,without"], check=True, cwd=ROOT)
    return out.parent, small_run.work_dir, json.loads(out.read_text())


@SMALL_RUN
def test_accuracy_bench_writes_a_gap_per_configuration_and_task(accuracy_bench):
    work, run, report = accuracy_bench
    assert [(r["architecture"], r["weighting"], r["text"]) for r in report["results"]] == [("esmm", "dwa", True),
                                                                                           ("esmm", "dwa", False)]
    summary = json.loads(open(os.path.join(run, "run_summary.json")).read())
    for result in report["results"]:
        for task in ("click", "like", "purchase"):
            metrics = result["tasks"][task]
            # the oracle is the pipeline run's, on the same eval split
            assert metrics["oracle_auc"] == summary["tasks"][task]["oracle_auc"]
            # no model beats the generator's truth beyond sampling noise (~1000 eval impressions,
            # ~200 of them clicked: like and purchase, where a 3-epoch model may sit at chance)
            assert (0.5 if task == "click" else 0.4) < metrics["auc"] < metrics["oracle_auc"] + 0.05
        assert 0 < result["tasks"]["dwell"]["rmse"] < 3 * summary["tasks"]["dwell"]["mean_label"]
    # the text ablation: text's effect is the with-text model's metric minus the other's, on all
    # eval impressions and on the cold-start slice, measured against the run's cold oracle
    with_text, without = (r["tasks"] for r in report["results"])
    for task, effect in report["text_effect"].items():
        metric = effect["metric"]
        assert effect["all"]["mean"] == pytest.approx(with_text[task][metric] - without[task][metric])
        if "cold" not in effect:  # the task's cold slice holds one class only on this small log
            assert metric not in with_text[task]["cold"]
            continue
        assert effect["cold"]["mean"] == pytest.approx(with_text[task]["cold"][metric] - without[task]["cold"][metric])
        if "cold_gap_closed" in effect:
            oracle = summary["cold_start"][task]["oracle_auc"]
            assert with_text[task]["cold"]["oracle_auc"] == oracle
            closable = oracle - without[task]["cold"]["auc"]
            assert effect["cold_gap_closed"] == pytest.approx(effect["cold"]["mean"] / closable)
    assert "cold_gap_closed" in report["text_effect"]["click"]
    assert with_text["click"]["cold"]["auc"] != with_text["click"]["auc"]  # a slice, not all impressions
    # three epochs on 4,000 impressions are far from the oracle: the 0.01 goal cannot be met
    assert not report["goal_met"] and report["best"]["worst_gap"] > 0.01
    assert (work / "accuracy.png").stat().st_size > 10_000
    assert set(summary["stl"]) == {"click", "like", "purchase", "dwell", "review_positive"}


@SMALL_RUN
def test_results_notebook_plots_the_benchmark_and_the_run(accuracy_bench, tmp_path):
    work, run, _ = accuracy_bench
    notebook = _execute("02_results.ipynb", tmp_path, {"MTREC_ACCURACY_JSON": str(work / "accuracy.json"),
                                                       "MTREC_RUN_SUMMARY": os.path.join(run, "run_summary.json")})
    text = _outputs(notebook)
    assert "goal met" in text and "negative_transfer" in text
    images = [o for cell in notebook.cells for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) == 3
