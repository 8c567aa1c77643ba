import dataclasses
import re

import pytest

from mtrec.config import BINARY, ConfigError, GateConfig, PipelineConfig


def test_defaults_are_valid_and_round_trip_through_yaml(tmp_path):
    config = PipelineConfig()
    path = tmp_path / "config.yaml"
    path.write_text(config.to_yaml())
    assert PipelineConfig.load(str(path)) == config
    assert [t.name for t in config.tasks] == ["click", "like", "purchase", "dwell", "review_positive"]
    assert config.label_keys == ["click", "dwell", "like", "purchase", "review_positive"]


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
    ("model: {weighting: magic}\n", "model.weighting"),
    ("tasks: [{name: r, type: retrieval}]\n", "tasks[0].type"),  # retrieval needs the two-tower model
    ("model: {architecture: esmm}\ntasks: [{name: click}]\n", "model.architecture"),  # nothing to chain
    ("model: {architecture: two_tower, query_features: [colour]}\n", "model.query_features"),
    ("gate_against: single_task\n", "gate_against"),  # needs baselines
    ("model: {stitch_self_weight: 1.5}\n", "model.stitch_self_weight"),
    ("protocol: kaggle\n", "protocol"),
    ("training: {strategy: horovod}\n", "training.strategy"),
    ("training: {mixed_precision: float8}\n", "training.mixed_precision"),
    ("training: {steps_per_execution: 0}\n", "training.steps_per_execution"),
    ("kubeflow: {trainer_gpus: two}\n", "kubeflow.trainer_gpus"),
    ("text: {unknown_ids_from_text: [reviews]}\n", "text.unknown_ids_from_text"),
    ("training: {warm_start_patience: -1}\n", "training.warm_start_patience"),
    ("training: {warm_start_epochs: -1}\n", "training.warm_start_epochs"),
    ("training: {intra_op_threads: -1}\n", "training.intra_op_threads"),
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


def test_transform_json_keeps_the_transform_cache_across_architecture_and_weighting():
    a = PipelineConfig()
    b = PipelineConfig.from_dict({"model": {"architecture": "ple", "weighting": "gradnorm"},
                                  "tasks": [dict(dataclasses.asdict(t), weight=2.0) for t in a.tasks]})
    assert a.training_json() != b.training_json()
    assert a.transform_json() == b.transform_json()
    assert PipelineConfig.from_json(a.transform_json()).label_keys == a.label_keys


def test_movielens_preset_is_a_valid_two_tower_config_and_tfrs_sets_the_tutorial_split():
    from mtrec.config import dataset_preset
    config = PipelineConfig.from_dict(dataset_preset("movielens-100k", "/data/ml", protocol="tfrs"))
    assert config.model.architecture == "two_tower"
    assert [(t.name, t.type) for t in config.tasks] == [("rating", "regression"), ("like", "binary"),
                                                        ("retrieval", "retrieval")]
    assert (config.data.split, config.data.eval_percent, config.data.split_seed) == ("hash", 20, 42)
    assert config.label_keys == ["like", "rating"] and [t.name for t in config.evaluated_tasks] == ["rating", "like"]
    with pytest.raises(ConfigError, match="dataset='imdb'"):
        dataset_preset("imdb")


def test_feature_treatments_and_splits_are_checked_naming_the_key():
    cases = [({"features": {"hashed": {"user_id": 8}}}, "features"),  # user_id is an id already
             ({"features": {"hashed": {"session": 1}}}, "features.hashed.session"),
             ({"features": {"impute": {"device": 0.0}}}, "features.impute"),
             ({"data": {"splits": {"train": "a*"}}}, "data.splits"),
             ({"data": {"source": "examples", "path": "/t", "format": "csv", "splits": {"train": "a", "dev": "b"}}},
              "data.splits"),
             ({"data": {"split": "hash", "eval_percent": 50, "test_percent": 50}}, "data.test_percent"),
             ({"tasks": [{"name": "dwell", "type": "regression", "positive": "x"}]}, "tasks[0].positive"),
             ({"tasks": [{"name": "a", "label": "y", "positive": "1"}, {"name": "b", "label": "y", "positive": "2"}]},
              "config tasks=")]
    for raw, key in cases:
        with pytest.raises(ConfigError, match=re.escape(key)):
            PipelineConfig.from_dict(raw)


def test_a_test_split_exists_only_when_asked_for():
    assert PipelineConfig().split_names == ["train", "eval"]
    assert PipelineConfig.from_dict({"data": {"test_days": 1}}).split_names == ["train", "eval", "test"]
    assert not PipelineConfig.from_dict({"data": {"test_percent": 10}}).has_test_split  # a time split: test_days
    table = {"source": "examples", "path": "/t", "format": "csv", "test_percent": 10}
    assert PipelineConfig.from_dict({"data": table}).has_test_split  # tables split by hash whatever `split` says
    hashed = PipelineConfig.from_dict({"data": {"split": "hash", "test_percent": 10}})
    assert hashed.has_test_split and hashed.label_positives == {}


def test_id_dropout_must_leave_some_ids_known():
    assert PipelineConfig().training.id_dropout == 0.3
    with pytest.raises(ConfigError, match="training.id_dropout"):
        PipelineConfig.from_dict({"training": {"id_dropout": 1.0}})
