"""The `mtrec` console command as installed by setup.py."""
import json
import os
import subprocess
import sys

import pytest
import yaml

from mtrec.config import ConfigError

MTREC = os.path.join(os.path.dirname(sys.executable), "mtrec")


def _mtrec(*args):
    return subprocess.run([MTREC, *args], capture_output=True, text=True, timeout=300)


def test_help_names_every_command():
    result = _mtrec("--help")
    assert result.returncode == 0
    for command in ("generate-logs", "run", "data", "config", "serve", "query", "recommend", "kfp"):
        assert command in result.stdout
    run_help = _mtrec("run", "--help").stdout
    for flag in ("--work-dir", "--logs", "--config", "--model", "--weighting", "--baselines", "--dataset", "--protocol"):
        assert flag in run_help


def test_config_prints_loadable_defaults():
    result = _mtrec("config")
    assert result.returncode == 0
    config = yaml.safe_load(result.stdout)
    assert [t["name"] for t in config["tasks"]] == ["click", "like", "purchase", "dwell", "review_positive"]


def test_generate_logs_with_malformed_lines(tmp_path):
    result = _mtrec("generate-logs", "--out", str(tmp_path), "--impressions", "500", "--days", "2", "--malformed", "14")
    assert result.returncode == 0, result.stderr
    assert "malformed" in result.stdout
    lines = (tmp_path / "events.jsonl").read_text().splitlines()
    bad = 0
    for line in lines:
        try:
            json.loads(line)
        except ValueError:
            bad += 1
    assert bad == 2  # two of the fourteen are invalid JSON, the rest are JSON with bad content


def test_run_refuses_bad_input_with_a_clear_message(tmp_path, capsys):
    (tmp_path / "bad.yaml").write_text("model: {architecture: transformer}\n")
    bad_config = _mtrec("run", "--work-dir", str(tmp_path / "w"), "--config", str(tmp_path / "bad.yaml"))
    assert bad_config.returncode == 2 and "model.architecture='transformer'" in bad_config.stderr
    # The rest in this process (TFX is loaded here already): the same exit code and message.
    from mtrec.cli import main

    def run(*args):
        code = main(["run", "--work-dir", str(tmp_path / "w"), *args])
        return code, capsys.readouterr().err

    code, err = run("--logs", str(tmp_path / "nowhere"))
    assert code == 2 and "nowhere does not exist" in err
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "events.jsonl").write_text("")
    code, err = run("--logs", str(tmp_path / "logs"))
    assert code == 2 and "no items file matches" in err
    code, err = run("--dataset", "movielens-100k", "--data-dir", str(tmp_path))
    assert code == 2 and "missing u.data" in err


def test_dataset_flags_need_their_companions():
    from mtrec import cli
    parse = lambda *argv: cli.load_config(cli._parser().parse_args(["run", "--work-dir", "w", *argv]))  # noqa: E731
    with pytest.raises(ConfigError, match="--dataset movielens-100k needs --data-dir"):
        parse("--dataset", "movielens-100k")
    with pytest.raises(ConfigError, match="--protocol tfrs needs --dataset movielens-100k"):
        parse("--protocol", "tfrs")
    config = parse("--dataset", "movielens-100k", "--data-dir", "/ml", "--protocol", "tfrs", "--weighting", "dwa")
    assert (config.data.split_seed, config.model.architecture, config.model.weighting) == (42, "two_tower", "dwa")


def test_text_is_on_for_the_synthetic_log_unless_the_config_file_says(tmp_path):
    from mtrec import cli
    from mtrec.config import SYNTHETIC_TEXT_FIELDS
    parse = lambda *argv: cli.load_config(cli._parser().parse_args(["run", "--work-dir", "w", *argv]))  # noqa: E731
    assert parse().text.fields == SYNTHETIC_TEXT_FIELDS
    assert parse("--ablate-text").text.ablation
    assert parse("--logs", "their-logs").text.fields == {}  # their logs: their fields, when they name them
    (tmp_path / "off.yaml").write_text("text: {fields: {}}\n")
    assert parse("--config", str(tmp_path / "off.yaml")).text.fields == {}
    with pytest.raises(ConfigError, match="text.ablation.*needs text.fields"):
        parse("--config", str(tmp_path / "off.yaml"), "--ablate-text")


def test_beam_args_from_the_command_line_replace_the_configs():
    from mtrec import cli
    args = cli._parser().parse_args(["run", "--work-dir", "w", "--beam-arg=--direct_running_mode=multi_processing",
                                     "--beam-arg=--direct_num_workers=0"])
    assert cli.load_config(args).beam_args == ["--direct_running_mode=multi_processing", "--direct_num_workers=0"]
    assert cli.load_config(cli._parser().parse_args(["run", "--work-dir", "w"])).beam_args == \
        ["--direct_running_mode=in_memory"]


def test_building_the_pipelines_leaves_tfx_v1_and_vertex_ai_out():
    """`tfx.v1` imports its Vertex AI extensions: 4.4 s of every `mtrec run`'s start, for nothing."""
    code = ("import sys, mtrec.cli, mtrec.pipeline.runner, mtrec.kubeflow.pipelines; "
            "print(sorted(m for m in ('tfx.v1', 'google.cloud.aiplatform') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "TF_USE_LEGACY_KERAS": "1"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_run_keeps_the_terminal_for_mtrec_and_sends_the_rest_to_the_log(tmp_path):
    """A run that stops at the data check: progress and one clear paragraph on the terminal;
    TensorFlow's and Beam's output and the trace in WORK_DIR/mtrec.log."""
    table = tmp_path / "table"
    table.mkdir()
    (table / "rows.csv").write_text("user,item,clicked\n" + "".join(f"u{i % 9},i{i % 4},{i % 2}\n" for i in range(200)))
    config = {"data": {"source": "examples", "path": str(table), "format": "csv", "schema": "infer"},
              "features": {"ids": ["user", "item"], "categorical": ["device"], "numeric": []},
              "tasks": [{"name": "clicked"}], "slices": []}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    work = tmp_path / "work"
    result = _mtrec("run", "--work-dir", str(work), "--config", str(tmp_path / "config.yaml"))
    assert result.returncode == 3, result.stderr
    terminal = result.stdout + result.stderr
    assert result.stderr.startswith("Loading TensorFlow, Beam and TFX ...\n"), "something shows at once"
    assert "  StatisticsGen done in" in terminal
    assert "column 'device' (features.categorical) is not in the data" in terminal
    assert f"The full trace is in {work}/mtrec.log" in terminal
    for noise in ("WARNING", "cuda", "tensorflow/core", "Traceback"):
        assert noise not in terminal, noise
    log = (work / "mtrec.log").read_text()
    assert "Traceback" in log and "DataAnomalyError" in log


def test_a_failure_is_one_paragraph_naming_the_component_and_the_innermost_cause():
    from mtrec.cli import failure_paragraph

    try:
        try:
            raise ValueError("Shapes (None, 2) and (None, 1) are incompatible\nmore lines")
        except ValueError as inner:
            raise RuntimeError("Failed to apply: ApplySavedModel") from inner
    except RuntimeError as error:
        error.mtrec_component = "Trainer"
        text = failure_paragraph(error, "/w/mtrec.log")
    assert text.splitlines()[0] == ("mtrec run failed in the Trainer component: ValueError: "
                                    "Shapes (None, 2) and (None, 1) are incompatible")
    assert "/w/mtrec.log" in text and "-v" in text


def test_config_from_table_drafts_a_config_that_loads(tmp_path):
    (tmp_path / "t.csv").write_text("user_id,device,price,clicked\n"
                                    + "".join(f"u{i % 30},{'m' if i % 3 else 'NA'},{i * 0.5},{i % 2}\n" for i in range(400)))
    result = _mtrec("config", "--from-table", str(tmp_path / "t.csv"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("# Drafted from")
    drafted = yaml.safe_load(result.stdout)
    assert drafted["tasks"][0]["label"] == "clicked" and drafted["features"]["ids"] == ["user_id"]
    assert _mtrec("config", "--from-table", str(tmp_path / "none.csv")).returncode == 2
