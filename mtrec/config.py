"""The one typed place for configuration: data, features, tasks, model, training and release gates.

A YAML file (`mtrec run --config FILE`) overrides any of the defaults below; unknown keys and bad
values fail at load time with the key path named, not deep inside a TFX component.
`mtrec config` prints the defaults as YAML to start from.
"""
from __future__ import annotations

import dataclasses
import json
import re
import typing
from dataclasses import dataclass, field
from typing import List, Optional

import yaml

BINARY = "binary"
REGRESSION = "regression"
ARCHITECTURES = ("shared_bottom", "mmoe")
ORCHESTRATORS = ("local", "beam")


class ConfigError(ValueError):
    """A configuration value is missing, unknown or out of range; the message names the key."""


@dataclass
class GateConfig:
    """Release gate of one task, checked by the Evaluator before anything is pushed.

    Args:
      bound: absolute bound on the gate metric (AUC at least this; RMSE at most this). None: no bound.
      tolerance: how far the metric may move the wrong way against the latest blessed model.
    """

    bound: Optional[float] = None
    tolerance: float = 0.02


@dataclass
class TaskConfig:
    """One prediction head.

    Args:
      name: output name of the model and of the serving signatures.
      type: `binary` (sigmoid, log loss, gated on AUC) or `regression` (linear, gated on RMSE).
      label: example feature holding the label; defaults to `name`.
      given: binary label this task is conditional on (like given click). Its value is the task's
        example weight, in training loss and in evaluation, so the task stays well defined while
        every impression stays in the data (what entire-space models such as ESMM train on).
      loss: Keras loss name; defaults to binary_crossentropy / huber.
      weight: weight of the task loss in the total loss.
    """

    name: str
    type: str = BINARY
    label: str = ""
    given: Optional[str] = None
    loss: str = ""
    weight: float = 1.0
    gate: GateConfig = field(default_factory=GateConfig)

    def __post_init__(self):
        self.label = self.label or self.name
        self.loss = self.loss or ("binary_crossentropy" if self.type == BINARY else "huber")

    @property
    def gate_metric(self) -> str:
        return "auc" if self.type == BINARY else "root_mean_squared_error"


@dataclass
class FeaturesConfig:
    """Model inputs by how Transform treats them.

    ids and categorical features get vocabularies with OOV buckets (unseen values at serving time
    land in a bucket instead of failing); numeric features are z-scored and also bucketised into
    `numeric_buckets` quantiles.
    """

    ids: List[str] = field(default_factory=lambda: ["user_id", "item_id"])
    categorical: List[str] = field(
        default_factory=lambda: ["device", "page", "position", "hour", "age_bucket", "region", "category"])
    numeric: List[str] = field(default_factory=lambda: ["price", "user_tenure_days"])
    oov_buckets: int = 10
    numeric_buckets: int = 10

    @property
    def names(self) -> List[str]:
        return self.ids + self.categorical + self.numeric


@dataclass
class DataConfig:
    """Where the interactions come from.

    Args:
      source: `synthetic` (generated into the work dir), `events` (raw logs to join: events,
        items and users files in `path`) or `examples` (a ready table with label columns).
      path: directory of the logs or of the example files.
      format: events: jsonl or csv (optionally .gz); examples: csv, parquet or tfrecord.
      split: `time` (the last `eval_days` days are the eval split) or `hash` (by impression id).
      schema: schema.pbtxt to validate against; `infer` lets SchemaGen infer one.
    """

    source: str = "synthetic"
    path: str = ""
    format: str = "jsonl"
    split: str = "time"
    eval_days: int = 1
    eval_percent: int = 20
    schema: str = "default"
    impressions: int = 200_000
    days: int = 7
    seed: int = 0


@dataclass
class ModelConfig:
    """Architecture and sizes; see `mtrec.models`."""

    architecture: str = "mmoe"
    embedding_dim: int = 16
    cross_layers: int = 1
    cross_projection_dim: Optional[int] = None
    bottom_units: List[int] = field(default_factory=lambda: [128, 64])
    num_experts: int = 4
    expert_units: List[int] = field(default_factory=lambda: [64])
    tower_units: List[int] = field(default_factory=lambda: [32])
    dropout: float = 0.0


@dataclass
class TrainingConfig:
    """Adam with early stopping: at most `epochs` passes, stopping after `patience` epochs without a
    better validation loss and keeping the best weights."""

    batch_size: int = 256
    epochs: int = 10
    patience: int = 2
    learning_rate: float = 0.003
    seed: int = 0


def _default_tasks() -> List[TaskConfig]:
    return [
        TaskConfig("click", BINARY, gate=GateConfig(bound=0.6)),
        TaskConfig("like", BINARY, given="click", gate=GateConfig(bound=0.55)),
        TaskConfig("purchase", BINARY, given="click", gate=GateConfig(bound=0.55)),
        TaskConfig("dwell", REGRESSION, given="click", weight=0.2, gate=GateConfig(bound=60.0, tolerance=1.0)),
    ]


@dataclass
class PipelineConfig:
    """Everything one `mtrec run` needs; `beam_args` go to every Beam-powered component.

    `orchestrator` runs the pipeline locally with TFX's LocalDagRunner (`local`, one process) or
    BeamDagRunner (`beam`, each component a step of a Beam pipeline).
    """

    name: str = "mtrec"
    orchestrator: str = "local"
    model_name: str = "mtrec"
    data: DataConfig = field(default_factory=DataConfig)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    tasks: List[TaskConfig] = field(default_factory=_default_tasks)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    slices: List[str] = field(default_factory=lambda: ["device", "category"])
    beam_args: List[str] = field(default_factory=lambda: ["--direct_running_mode=in_memory"])

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        _check(re.fullmatch(r"[a-z0-9][a-z0-9-]*", self.name), "name", self.name,
               "must match [a-z0-9][a-z0-9-]* (Kubeflow pipeline names)")
        _check(self.orchestrator in ORCHESTRATORS, "orchestrator", self.orchestrator, f"must be one of {ORCHESTRATORS}")
        _check(self.data.source in ("synthetic", "events", "examples"), "data.source", self.data.source,
               "must be synthetic, events or examples")
        if self.data.source != "synthetic":
            _check(self.data.path, "data.path", self.data.path, f"is required for source {self.data.source}")
        formats = {"synthetic": ("jsonl",), "events": ("jsonl", "csv"), "examples": ("csv", "parquet", "tfrecord")}
        _check(self.data.format in formats[self.data.source], "data.format", self.data.format,
               f"must be one of {formats[self.data.source]} for source {self.data.source}")
        _check(self.data.split in ("time", "hash"), "data.split", self.data.split, "must be time or hash")
        _check(self.data.source != "examples" or self.data.split == "hash", "data.split", self.data.split,
               "ready example tables are split by hash")
        _check(0 < self.data.eval_percent < 100, "data.eval_percent", self.data.eval_percent, "must be in 1..99")
        _check(self.data.eval_days >= 1, "data.eval_days", self.data.eval_days, "must be >= 1")
        _check(self.data.impressions >= 100, "data.impressions", self.data.impressions, "must be >= 100")
        _check(self.model.architecture in ARCHITECTURES, "model.architecture", self.model.architecture,
               f"must be one of {ARCHITECTURES}")
        _check(self.tasks, "tasks", self.tasks, "needs at least one task")
        names = [t.name for t in self.tasks]
        _check(len(set(names)) == len(names), "tasks", names, "task names must be unique")
        labels = {t.label for t in self.tasks}
        for i, task in enumerate(self.tasks):
            _check(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", task.name), f"tasks[{i}].name", task.name,
                   "must be an identifier (it names a model output)")
            _check(task.type in (BINARY, REGRESSION), f"tasks[{i}].type", task.type, "must be binary or regression")
            _check(task.weight >= 0, f"tasks[{i}].weight", task.weight, "must be >= 0")
            _check(task.given is None or task.given in labels, f"tasks[{i}].given", task.given,
                   f"must be the label of another task, one of {sorted(labels)}")
        overlap = set(self.features.names) & labels
        _check(not overlap, "features", sorted(overlap), "labels cannot be model inputs")
        for name in self.slices:
            _check(name in self.features.names, "slices", name, "must be a feature")

    @property
    def label_keys(self) -> List[str]:
        return sorted({t.label for t in self.tasks} | {t.given for t in self.tasks if t.given})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def training_json(self) -> str:
        """Only what Transform and Trainer read, as their `custom_config`: changing a release gate,
        a slice or the data location then reuses TFX's cached Transform and Trainer runs."""
        tasks = [{k: v for k, v in dataclasses.asdict(t).items() if k != "gate"} for t in self.tasks]
        return json.dumps({"features": dataclasses.asdict(self.features), "tasks": tasks, "slices": [],
                           "model": dataclasses.asdict(self.model), "training": dataclasses.asdict(self.training)},
                          sort_keys=True)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, raw: dict) -> "PipelineConfig":
        return _build(cls, raw or {}, "")

    @classmethod
    def from_json(cls, text: str) -> "PipelineConfig":
        return cls.from_dict(json.loads(text))

    @classmethod
    def load(cls, path: str) -> "PipelineConfig":
        try:
            with open(path) as f:
                raw = yaml.safe_load(f)
        except (OSError, yaml.YAMLError) as e:
            raise ConfigError(f"config file {path}: {e}") from e
        if raw is not None and not isinstance(raw, dict):
            raise ConfigError(f"config file {path}: expected a mapping at the top level")
        return cls.from_dict(raw)


def _check(ok, key: str, value, problem: str) -> None:
    if not ok:
        raise ConfigError(f"config {key}={value!r}: {problem}")


def _build(cls, raw, path: str):
    """Builds dataclass `cls` from plain YAML/JSON data, naming the key path of anything wrong."""
    if not isinstance(raw, dict):
        raise ConfigError(f"config {path or '<top>'}: expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(raw) - known
    if unknown:
        raise ConfigError(f"config {path or '<top>'}: unknown key(s) {sorted(unknown)}; known: {sorted(known)}")
    kwargs = {key: _convert(hints[key], value, f"{path}.{key}".lstrip(".")) for key, value in raw.items()}
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ConfigError(f"config {path or '<top>'}: {e}") from e


def _convert(hint, value, path: str):
    origin = typing.get_origin(hint)
    if origin is typing.Union:  # Optional[X]
        if value is None:
            return None
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
        origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, path)
    if origin in (list, List):
        if not isinstance(value, list):
            raise ConfigError(f"config {path}={value!r}: expected a list")
        (item,) = typing.get_args(hint)
        return [_convert(item, v, f"{path}[{i}]") for i, v in enumerate(value)]
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise ConfigError(f"config {path}={value!r}: expected {hint.__name__}")
    return value
