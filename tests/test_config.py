import dataclasses

import pytest

from mtrec.config import BINARY, ConfigError, GateConfig, PipelineConfig


def test_defaults_are_valid_and_round_trip_through_yaml(tmp_path):
    config = PipelineConfig()
    path = tmp_path / "config.yaml"
    path.write_text(config.to_yaml())
    assert PipelineConfig.load(str(path)) == config
    assert [t.name for t in config.tasks] == ["click", "like", "purchase", "dwell"]
    assert config.label_keys == ["click", "dwell", "like", "purchase"]


def test_yaml_overrides_and_fills_task_defaults(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("model: {architecture: shared_bottom}\n"
                    "tasks:\n  - {name: ctr, label: click, gate: {bound: 0.7}}\n  - {name: cvr, label: purchase, given: click}\n")
    config = PipelineConfig.load(str(path))
    assert config.model.architecture == "shared_bottom"
    assert config.tasks[0].type == BINARY and config.tasks[0].loss == "binary_crossentropy"
    assert config.tasks[0].gate.bound == 0.7 and config.tasks[1].given == "click"


@pytest.mark.parametrize("yaml_text, named", [
    ("modle: {}\n", "modle"),
    ("model: {architecture: transformer}\n", "model.architecture"),
    ("training: {epochs: ten}\n", "training.epochs"),
    ("tasks: [{name: ctr, type: ordinal}]\n", "tasks[0].type"),
    ("tasks: [{name: a, given: nothing}]\n", "tasks[0].given"),
    ("name: My_Pipeline\n", "name"),
    ("data: {source: events}\n", "data.path"),
    ("slices: [colour]\n", "slices"),
    ("features: {ids: [click]}\n", "features"),
    ("orchestrator: airflow\n", "orchestrator"),
])
def test_bad_config_names_the_key(tmp_path, yaml_text, named):
    path = tmp_path / "config.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError, match=r"config .*" + named.replace("[", r"\[").replace("]", r"\]")):
        PipelineConfig.load(str(path))


def test_training_json_leaves_out_gates_so_gate_changes_keep_the_cache():
    a = PipelineConfig()
    raw = a.to_dict()
    raw["tasks"][0]["gate"] = {"bound": 0.99, "tolerance": 0.0}
    raw["slices"] = ["device"]
    b = PipelineConfig.from_dict(raw)
    assert a.to_json() != b.to_json()
    assert a.training_json() == b.training_json()
    rebuilt = PipelineConfig.from_json(a.training_json())
    assert rebuilt.tasks == [dataclasses.replace(t, gate=GateConfig()) for t in a.tasks]
    assert rebuilt.features == a.features and rebuilt.model == a.model and rebuilt.training == a.training


def test_architectures_match_the_model_registry():
    from mtrec import config, models
    assert set(config.ARCHITECTURES) == set(models.ARCHITECTURES)
