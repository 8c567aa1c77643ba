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
from typing import Dict, List, Optional

import yaml

from mtrec.task_types import BINARY, REGRESSION, RETRIEVAL, TASK_TYPES, TaskType  # noqa: F401 (re-exported)
from mtrec.transformed import ITEM_ID, REVIEW_POSITIVE, REVIEWS_BEFORE
ARCHITECTURES = ("shared_bottom", "mmoe", "ple", "esmm", "cross_stitch", "two_tower")
WEIGHTINGS = ("fixed", "uncertainty", "gradnorm", "dwa")
ORCHESTRATORS = ("local", "beam")
SOURCES = ("synthetic", "events", "examples", "movielens-100k")
SPLIT_NAMES = ("train", "eval", "test")
GATE_BASELINES = ("latest_blessed", "single_task")
PROTOCOLS = ("", "tfrs")
DATASETS = ("synthetic", "movielens-100k")
STRATEGIES = ("default", "one_device", "mirrored", "multi_worker_mirrored")
PRECISIONS = ("", "mixed_float16", "mixed_bfloat16")
CACHE_MODES = ("auto", "memory", "none")
CACHE_LIMIT_BYTES = 1 << 30  # tf.data writes an in-memory dataset into its graph, which protobuf caps at 2 GB


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
      type: `binary` (sigmoid, log loss, gated on AUC), `regression` (linear, gated on RMSE) or
        `retrieval` (two-tower only: in-batch softmax over items, TFRS Retrieval; positives are the
        examples whose `given` label is set, or all examples; measured by top-K accuracy).
      label: example feature holding the label; defaults to `name` (unused by retrieval).
      given: binary label this task is conditional on (like given click). Its value is the task's
        example weight, in training loss and in evaluation, so the task stays well defined while
        every impression stays in the data (what entire-space models such as ESMM train on).
      loss: Keras loss name; defaults to binary_crossentropy / huber.
      weight: weight of the task loss in the total loss.
      positive: binary tasks whose label column holds values other than 0/1 (`yes`/`no`,
        `male`/`female`): the value that means 1; any other present value is 0, a missing one
        excludes the example from this task.
    """

    name: str
    type: str = BINARY
    label: str = ""
    given: Optional[str] = None
    loss: str = ""
    weight: float = 1.0
    positive: str = ""
    gate: GateConfig = field(default_factory=GateConfig)

    def __post_init__(self):
        self.label = self.label or self.name
        self.loss = self.loss or (TASK_TYPES[self.type].default_loss if self.type in TASK_TYPES else "")

    @property
    def kind(self) -> TaskType:
        """What this task's type means (activation, loss, metrics, gate direction)."""
        return TASK_TYPES[self.type]

    @property
    def gate_metric(self) -> str:
        return self.kind.gate_metric


@dataclass
class FeaturesConfig:
    """Model inputs by how Transform treats them, missing values included.

    ids and categorical features get vocabularies with OOV buckets (unseen values at serving time
    land in a bucket instead of failing); a missing value (absent, empty string) is its own
    vocabulary entry, `__missing__`, distinct from OOV. Int-coded categoricals work as they are.
    `hashed` features (`{name: buckets}`) are hashed into that many buckets instead, for ids too
    many for a vocabulary; a missing value takes a bucket of its own. Numeric features are
    z-scored and bucketised into `numeric_buckets` quantiles; a missing value (absent or NaN) is
    imputed with the mean of the present values (Transform's analyzer) or the constant in
    `impute`, and the model also sees `<name>_missing` (1 where it was missing).
    """

    ids: List[str] = field(default_factory=lambda: ["user_id", "item_id"])
    categorical: List[str] = field(
        default_factory=lambda: ["device", "page", "position", "hour", "age_bucket", "region", "category"])
    numeric: List[str] = field(default_factory=lambda: ["price", "user_tenure_days"])
    hashed: Dict[str, int] = field(default_factory=dict)
    impute: Dict[str, float] = field(default_factory=dict)
    oov_buckets: int = 10
    numeric_buckets: int = 10

    @property
    def vocabulary(self) -> List[str]:
        """Features looked up in a Transform vocabulary."""
        return self.ids + self.categorical

    @property
    def names(self) -> List[str]:
        return self.ids + self.categorical + list(self.hashed) + self.numeric

    @property
    def cold_start_key(self) -> Optional[str]:
        """The id feature that tells an item training never saw (not in its Transform vocabulary),
        for the cold-start slice; None where items have no such id."""
        return ITEM_ID if ITEM_ID in self.vocabulary else None


# Side tables that can carry text, and the id feature each table's vectors are looked up by.
TEXT_TABLES = {"items": "item_id", "users": "user_id"}
# Review events' text: an item's reviews, looked up by its id and how many it had then.
REVIEWS = "reviews"
TEXT_SOURCES = {**TEXT_TABLES, REVIEWS: ITEM_ID}
# The synthetic log's text: `mtrec run` on it uses these unless the config sets `text.fields`.
SYNTHETIC_TEXT_FIELDS = {"items": ["title", "description"], "users": ["about"], REVIEWS: ["text"]}


@dataclass
class TextConfig:
    """Text features: side-table text encoded by a frozen pretrained sentence encoder
    (all-MiniLM-L6-v2 unless `encoder_path` says otherwise; see `mtrec.text`).

    Args:
      fields: {table: [field, ...]}, tables `items` and `users`: each row's fields, joined, are
        one text; its vector is looked up by the row's id (item_id, user_id) inside the model,
        and ids without text (or unknown) get a learned default. `reviews: [text]`: the review
        events' text; an example sees the mean vector of its item's reviews written before its
        impression (`item_reviews_before` of them), what others said. Empty: no text features.
      encoder_path: a sentence-transformers BERT directory; "" is the installed all-MiniLM-L6-v2.
      max_length: tokens per text; longer texts are cut.
      batch_size: texts per encoder call.
      projection_dim: each table's vectors pass a learned projection to this size before the
        architecture shares them among tasks.
      match: also the cosine of the user's and the item's text vectors (when both tables have
        text; not in two-tower models, whose towers see one side each).
      unknown_ids_from_text: tables (`items`, `users`) whose ids outside the vocabulary (new
        ones, or those `training.id_dropout` hides in training) are embedded by a learned map of
        their text vector (DropoutNet) instead of their OOV row, so what the model learned of
        known ids' embeddings reads a new item's text. Default `[items]`: with `users` too, the
        default log's cold-item click lost what the items' map gained. Without id dropout the map
        stays untrained, as the OOV rows would.
      reduce_dim: 0 keeps the encoder's vectors (384 floats); N > 0 stores their projection on the
        catalogue's top N principal directions (one basis for every table, uncentred, so the
        user-item cosine keeps its meaning): a served table N/384 the size.
      ablation: also train the same model without text features on the same splits, and report
        each task with and without text, on all eval impressions and on the cold-start slice.
    """

    fields: Dict[str, List[str]] = field(default_factory=dict)
    encoder_path: str = ""
    max_length: int = 64
    batch_size: int = 64
    projection_dim: int = 16
    match: bool = True
    unknown_ids_from_text: List[str] = field(default_factory=lambda: ["items"])
    reduce_dim: int = 0
    ablation: bool = False

    @property
    def id_features(self) -> Dict[str, str]:
        """{id feature: table} of the tables with text."""
        return {TEXT_TABLES[table]: table for table in self.fields if table in TEXT_TABLES}

    @property
    def key_features(self) -> List[str]:
        """The id features whose raw values the model looks text vectors up by."""
        return sorted({TEXT_SOURCES[source] for source in self.fields})

    @property
    def raw_features(self) -> List[str]:
        """Raw inputs the text features add to the configured ones: the review count."""
        return [REVIEWS_BEFORE] if REVIEWS in self.fields else []


@dataclass
class DataConfig:
    """Where the interactions come from.

    Args:
      source: `synthetic` (generated into the work dir), `events` (raw logs to join: events,
        items and users files in `path`), `examples` (a ready table with label columns) or
        `movielens-100k` (u.data, u.user, u.item in `path`, turned into an event log).
      path: directory of the logs, of the example files or of MovieLens.
      format: events: jsonl or csv (optionally .gz); examples: csv, parquet or tfrecord.
      split: `time` (the last `eval_days` days are the eval split) or `hash` (`eval_percent` of
        impression ids, drawn by hashing them with `split_seed`). Ready example tables have no
        time contract: they are split by hash, or by their own files (`splits`).
      pattern: ready example tables: glob of the table's files under `path` (split by `split`).
      splits: the user's own split files, `{train: PATTERN, eval: PATTERN, test: PATTERN}` (glob
        patterns under `path`, `test` optional), for ready example tables.
      test_days, test_percent: an optional `test` split, never seen by training or early
        stopping: the last `test_days` days (after the eval days) or `test_percent` of ids.
      schema: schema.pbtxt to validate against; `infer` lets SchemaGen infer one.
      span: "" reads the log in `path` as one; `latest` or a date (YYYY-MM-DD) reads `path` as a
        daily log, one folder per day (`path/YYYY-MM-DD/`, TFX spans), and ingests that day's.
        Each day is split by hash (`eval_percent`); the release Evaluator measures the day's eval split.
      window_days: with `span`, Transform and Trainer read the last N days up to `span` (those
        ingested by earlier runs are reused from MLMD, not read again).
    """

    source: str = "synthetic"
    path: str = ""
    format: str = "jsonl"
    split: str = "time"
    eval_days: int = 1
    eval_percent: int = 20
    split_seed: int = 0
    pattern: str = "*"
    splits: Dict[str, str] = field(default_factory=dict)
    test_days: int = 0
    test_percent: int = 0
    schema: str = "default"
    impressions: int = 200_000
    days: int = 7
    seed: int = 0
    span: str = ""
    window_days: int = 1


@dataclass
class DriftConfig:
    """TFDV drift comparators between a daily log's span and the one before it, checked before
    Transform: a categorical feature's L-infinity distance, a numeric one's Jensen-Shannon
    divergence, over `threshold` stops the run naming the feature (`features`: a threshold per
    feature; 0 leaves it out). Ids are left out: a catalogue turns over by design. Label rates
    are reported beside, not gated. The defaults let the synthetic log's slow daily drift through
    and stop a sharp shift (see README).
    """

    categorical: float = 0.1
    numeric: float = 0.1
    features: Dict[str, float] = field(default_factory=dict)
    gate: bool = True


@dataclass
class ModelConfig:
    """Architecture, sizes and task-loss weighting; see `mtrec.models`.

    Args:
      num_experts: MMoE experts; PLE's shared experts per level.
      task_experts, levels: PLE's task-specific experts per task and level, and its CGC levels.
      stitch_self_weight: cross-stitch units start as this much of a task's own column and the
        rest shared equally among the other columns.
      query_features: two-tower: features of the user (query) tower; all others form the item tower.
      embedding_l2: L2 penalty on the id tables: rare ids overfit first (on by default: measured to
        narrow the gap to the oracle AUC, see README).
      weighting: how task losses combine (`fixed` uses the task weights); see `mtrec.models.weighting`.
      gradnorm_alpha: GradNorm's restoring force; 0 pulls to equal gradient norms.
      dwa_temperature: DWA's softmax temperature.
    """

    architecture: str = "mmoe"
    embedding_dim: int = 16
    embedding_l2: float = 1e-4
    cross_layers: int = 1
    cross_projection_dim: Optional[int] = None
    bottom_units: List[int] = field(default_factory=lambda: [128, 64])
    num_experts: int = 4
    expert_units: List[int] = field(default_factory=lambda: [64])
    task_experts: int = 1
    levels: int = 2
    stitch_self_weight: float = 0.9
    tower_units: List[int] = field(default_factory=lambda: [32])
    query_features: List[str] = field(default_factory=lambda: ["user_id", "age_bucket", "region", "user_tenure_days"])
    dropout: float = 0.0
    weighting: str = "fixed"
    gradnorm_alpha: float = 1.5
    dwa_temperature: float = 2.0


@dataclass
class TrainingConfig:
    """Adam with early stopping: at most `epochs` passes, stopping after `patience` epochs without a
    better validation loss and keeping the best weights.

    Args:
      batch_size: examples per replica; the global batch is this times the replicas in sync.
      strategy: `default`, `one_device`, `mirrored` (local GPUs, else `logical_cpu_devices`) or
        `multi_worker_mirrored` (the cluster in TF_CONFIG); see `mtrec.pipeline.distribution`.
      logical_cpu_devices: split the CPU into this many devices before TensorFlow starts (0: no),
        so `mirrored` can run without GPUs.
      intra_op_threads, inter_op_threads: TensorFlow's thread pools, set before it starts (0: its
        default, a thread per core). One thread per op (default) with ops in parallel: a batch of
        256 through our layers is many small kernels, which a second thread per op slows more than
        it helps (the raw train step 1.5x faster on 2 cores: bench/README, Training throughput).
        The pools are the process's: under `mtrec run` every component shares them, except the
        TextEmbedder's encoder, whose Session has its own; 0 and 0 give all TensorFlow's defaults.
      mixed_precision: "" (float32), `mixed_float16` (GPUs, with loss scaling) or `mixed_bfloat16`.
      steps_per_execution: training steps per tf.function call, so Python leaves the loop (same
        results; callbacks still see every epoch). 1 under multi_worker_mirrored.
      jit_compile: compile the train step with XLA.
      cache: `auto` keeps the transformed train and eval splits in memory, parsed, when they fit
        (at most `CACHE_LIMIT_BYTES` and a quarter of the machine's memory), so an epoch after the
        first reads no files; `memory` always, `none` never (both stream from the files). Every
        epoch is reshuffled either way; not under multi_worker_mirrored, whose workers shard files.
        Where the Trainer may cache (`transform_in_trainer`), it also applies Transform's graph
        itself, and Transform only analyses. In memory each pass's order is drawn over the rows
        sorted by their values, not as Beam happened to write them, so a run is reproducible (`seed`).
      seed: draws the initial weights, each epoch's order and the ids `id_dropout` hides: the same
        logs and seed train the same model, in a rerun or another work dir (in memory: `cache`;
        Transform's means and variances are summed in float64, which no summing order changes).
      warm_start: on a daily log (`data.span`), start from the latest blessed model when there is
        one (a one-off run trains from scratch, and a rerun reuses its cache): its dense layers as they
        were, its id embeddings row by row through both runs' vocabularies (a known id keeps its
        vector, a new id gets a fresh row, a dropped id goes); a model of another shape starts fresh.
      warm_start_spans: a warm-started day trains on the newest this many spans of its window, the
        days its base model has not seen; 0 (default): the whole window, as a cold start always
        does. Early stopping still watches the whole window's eval split. 1 cuts the fit to 0.3-0.4
        of a cold start's, at some accuracy (bench/README, Continuous training).
      warm_start_epochs: the epochs of a fit that did start from a blessed model (default 1: one
        pass over its data, the incremental training of a model kept fresh day by day); 0: up to
        `epochs`, with early stopping at `warm_start_patience`. A warm start begins at or near its
        best: on the 7-day bench early stopping kept the first epoch on most days, and one pass
        took 0.31-0.55 of a cold start's fit (early stopping's epochs 0.49-0.96), AUC ahead of cold's
        on every task from the fourth day, behind on days 2-3 (bench/README, Continuous training).
      warm_start_patience: early stopping's patience for a warm start of `warm_start_epochs: 0`
        (1: one epoch without improvement confirms the start was at its best).
      id_dropout: share of training examples whose each vocabulary id feature (features.ids) is
        read as an id never seen, so the OOV rows learn what to predict for a new item or user
        from its other features and text (DropoutNet); 0: no training example reaches them.
      backup_dir: where BackupAndRestore keeps the last epoch; "" puts it beside the Trainer's outputs.
    """

    batch_size: int = 256
    epochs: int = 10
    patience: int = 2
    learning_rate: float = 0.003
    seed: int = 0
    strategy: str = "default"
    logical_cpu_devices: int = 0
    intra_op_threads: int = 1
    inter_op_threads: int = 0
    mixed_precision: str = ""
    steps_per_execution: int = 32
    jit_compile: bool = False
    cache: str = "auto"
    id_dropout: float = 0.3
    warm_start: bool = True
    warm_start_epochs: int = 1
    warm_start_patience: int = 1
    warm_start_spans: int = 0
    backup_dir: str = ""

    @property
    def streams(self) -> bool:
        """Whether the Trainer streams its splits from the files every epoch by configuration
        (`cache: none`, or multi_worker_mirrored, whose workers shard files) instead of keeping
        them in memory when they fit (`cache`)."""
        return self.cache == "none" or self.strategy == "multi_worker_mirrored"

    @property
    def transform_in_trainer(self) -> bool:
        """Whether the Trainer reads the raw examples and applies Transform's graph to them itself
        (TFX's Transform with `materialize=False`), rather than reading transformed examples
        Transform wrote. Applied once, eagerly, to splits the Trainer keeps in memory, the graph
        costs a few seconds in TensorFlow (a 100,000-impression run's splits read in 2.7-4.7 s),
        where writing the transformed splits from Beam cost Transform 40 s of the main job
        (README, the main job's table). A Trainer that streams by configuration (`cache: none`,
        multi_worker_mirrored) reads transformed examples, so no epoch pays for the graph; one
        given raw examples that streams anyway (splits too big for `auto`, a retrain under another
        strategy) applies the graph to every batch."""
        return not self.streams


@dataclass
class KubeflowConfig:
    """Where and how `mtrec kfp compile` runs the pipeline on Kubeflow Pipelines.

    Args:
      image: the pipeline image (kubeflow/Dockerfile: TFX 1.16 + this package), in a registry the
        cluster pulls from. Every component runs in it.
      pipeline_root: where artifacts go (gs://...); the run can override it.
      serving_dir: where the Pusher writes `<model>/<version>/`; "" is `<pipeline_root>/serving`.
      trainer_cpu, trainer_memory_gb, trainer_gpus, gpu_type: the Trainer pod's resources (0: the
        cluster's defaults); with GPUs, set `training.strategy: mirrored` to use them all.
    """

    image: str = "mtrec-pipeline:0.1.0"
    pipeline_root: str = ""
    serving_dir: str = ""
    trainer_cpu: float = 0.0
    trainer_memory_gb: float = 0.0
    trainer_gpus: int = 0
    gpu_type: str = "NVIDIA_TESLA_T4"


def _default_tasks() -> List[TaskConfig]:
    return [
        TaskConfig("click", BINARY, gate=GateConfig(bound=0.6)),
        TaskConfig("like", BINARY, given="click", gate=GateConfig(bound=0.55)),
        TaskConfig("purchase", BINARY, given="click", gate=GateConfig(bound=0.55)),
        TaskConfig("dwell", REGRESSION, given="click", weight=0.2, gate=GateConfig(bound=60.0, tolerance=1.0)),
        # Labelled only where the impression was reviewed (the others weigh 0): few labels, a loose gate.
        TaskConfig(REVIEW_POSITIVE, BINARY, gate=GateConfig(bound=0.55, tolerance=0.05)),
    ]


@dataclass
class PipelineConfig:
    """Everything one `mtrec run` needs; `beam_args` go to every Beam-powered component.

    `orchestrator` runs the pipeline locally with TFX's LocalDagRunner (`local`, one process) or
    BeamDagRunner (`beam`, each component a step of a Beam pipeline).
    `baselines` also trains one single-task model per task on the same splits and compares each
    task with it; `gate_against` is what the Evaluator's change thresholds compare with: the
    latest blessed model, or those single-task baselines. `protocol: tfrs` marks a run that
    follows the TFRS multitask tutorial, so its summary shows the tutorial's figures beside ours.
    """

    name: str = "mtrec"
    orchestrator: str = "local"
    model_name: str = "mtrec"
    data: DataConfig = field(default_factory=DataConfig)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    tasks: List[TaskConfig] = field(default_factory=_default_tasks)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    text: TextConfig = field(default_factory=TextConfig)
    drift: DriftConfig = field(default_factory=DriftConfig)
    slices: List[str] = field(default_factory=lambda: ["device", "category"])
    baselines: bool = False
    gate_against: str = "latest_blessed"
    protocol: str = ""
    beam_args: List[str] = field(default_factory=lambda: ["--direct_running_mode=in_memory"])
    kubeflow: KubeflowConfig = field(default_factory=KubeflowConfig)

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        _check(re.fullmatch(r"[a-z0-9][a-z0-9-]*", self.name), "name", self.name,
               "must match [a-z0-9][a-z0-9-]* (Kubeflow pipeline names)")
        _check(self.orchestrator in ORCHESTRATORS, "orchestrator", self.orchestrator, f"must be one of {ORCHESTRATORS}")
        data = self.data
        _check(self.data.source in SOURCES, "data.source", self.data.source, f"must be one of {SOURCES}")
        if self.data.source != "synthetic":
            _check(self.data.path, "data.path", self.data.path, f"is required for source {self.data.source}")
        formats = {"synthetic": ("jsonl",), "events": ("jsonl", "csv"), "examples": ("csv", "parquet", "tfrecord"),
                   "movielens-100k": ("jsonl",)}
        _check(self.data.format in formats[self.data.source], "data.format", self.data.format,
               f"must be one of {formats[self.data.source]} for source {self.data.source}")
        _check(self.data.split in ("time", "hash"), "data.split", self.data.split, "must be time or hash")
        _check(0 < self.data.eval_percent < 100, "data.eval_percent", self.data.eval_percent, "must be in 1..99")
        _check(self.data.eval_days >= 1, "data.eval_days", self.data.eval_days, "must be >= 1")
        _check(self.data.test_days >= 0, "data.test_days", self.data.test_days, "must be >= 0")
        _check(0 <= self.data.test_percent < 100 - self.data.eval_percent, "data.test_percent",
               self.data.test_percent, "must be >= 0 and leave some of the data for training beside eval_percent")
        if self.data.splits:
            _check(self.data.source == "examples", "data.splits", self.data.splits,
                   "is for ready example tables (source: examples)")
            _check({"train", "eval"} <= set(self.data.splits) <= set(SPLIT_NAMES), "data.splits",
                   sorted(self.data.splits), f"needs train and eval patterns, and may have test ({SPLIT_NAMES})")
        if data.span:
            _check(data.span == "latest" or re.fullmatch(r"\d{4}-\d{2}-\d{2}", data.span), "data.span", data.span,
                   "must be latest or a date, YYYY-MM-DD")
            _check(data.source == "events", "data.span", data.span, "reads a daily event log (data.source: events)")
            _check(data.split == "hash", "data.split", data.split,
                   "must be hash with data.span: a day is one span, split by impression id")
        _check(data.window_days >= 1, "data.window_days", data.window_days, "must be >= 1")
        for name, value in [("categorical", self.drift.categorical), ("numeric", self.drift.numeric),
                            *self.drift.features.items()]:
            _check(value >= 0, f"drift.{name}", value, "must be >= 0 (0: not compared)")
        features = self.features
        names = features.names
        repeated = sorted({n for n in names if names.count(n) > 1})
        _check(not repeated, "features", repeated, "a feature can have one treatment only")
        for name, buckets in features.hashed.items():
            _check(buckets >= 2, f"features.hashed.{name}", buckets, "must be >= 2 buckets")
        unknown = sorted(set(features.impute) - set(features.numeric))
        _check(not unknown, "features.impute", unknown, "imputes numeric features only")
        _check(self.data.impressions >= 100, "data.impressions", self.data.impressions, "must be >= 100")
        model = self.model
        _check(model.architecture in ARCHITECTURES, "model.architecture", model.architecture,
               f"must be one of {ARCHITECTURES}")
        _check(model.weighting in WEIGHTINGS, "model.weighting", model.weighting, f"must be one of {WEIGHTINGS}")
        _check(model.num_experts >= 1 and model.task_experts >= 1 and model.levels >= 1,
               "model", (model.num_experts, model.task_experts, model.levels),
               "num_experts, task_experts and levels must be >= 1")
        _check(0.0 <= model.stitch_self_weight <= 1.0, "model.stitch_self_weight", model.stitch_self_weight,
               "must be in [0, 1]")
        training = self.training
        _check(training.strategy in STRATEGIES, "training.strategy", training.strategy, f"must be one of {STRATEGIES}")
        _check(training.mixed_precision in PRECISIONS, "training.mixed_precision", training.mixed_precision,
               f"must be one of {PRECISIONS}")
        _check(training.batch_size >= 1, "training.batch_size", training.batch_size, "must be >= 1")
        _check(0.0 <= training.id_dropout < 1.0, "training.id_dropout", training.id_dropout, "must be in [0, 1)")
        _check(training.cache in CACHE_MODES, "training.cache", training.cache, f"must be one of {CACHE_MODES}")
        _check(training.warm_start_spans >= 0, "training.warm_start_spans", training.warm_start_spans,
               "must be >= 0 (0: the whole window)")
        for name in ("patience", "warm_start_epochs", "warm_start_patience", "logical_cpu_devices",
                     "intra_op_threads", "inter_op_threads"):
            _check(getattr(training, name) >= 0, f"training.{name}", getattr(training, name), "must be >= 0")
        _check(training.steps_per_execution >= 1, "training.steps_per_execution", training.steps_per_execution,
               "must be >= 1")
        _check(self.protocol in PROTOCOLS, "protocol", self.protocol, f"must be one of {PROTOCOLS}")
        _check(self.gate_against in GATE_BASELINES, "gate_against", self.gate_against, f"must be one of {GATE_BASELINES}")
        _check(self.gate_against != "single_task" or self.baselines, "gate_against", self.gate_against,
               "needs baselines: true (the single-task models are what it compares with)")
        _check(self.tasks, "tasks", self.tasks, "needs at least one task")
        names = [t.name for t in self.tasks]
        _check(len(set(names)) == len(names), "tasks", names, "task names must be unique")
        labels = {t.label for t in self.tasks if t.type != RETRIEVAL}
        for i, task in enumerate(self.tasks):
            _check(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", task.name), f"tasks[{i}].name", task.name,
                   "must be an identifier (it names a model output)")
            _check(task.type in TASK_TYPES, f"tasks[{i}].type", task.type, f"must be one of {tuple(TASK_TYPES)}")
            _check(task.type != RETRIEVAL or model.architecture == "two_tower", f"tasks[{i}].type", task.type,
                   "retrieval needs model.architecture two_tower")
            _check(task.weight >= 0, f"tasks[{i}].weight", task.weight, "must be >= 0")
            _check(task.given is None or task.given in labels, f"tasks[{i}].given", task.given,
                   f"must be the label of another task, one of {sorted(labels)}")
            _check(not task.positive or task.type == BINARY, f"tasks[{i}].positive", task.positive,
                   "is for binary tasks")
        positives = {}
        for t in self.tasks:
            if t.type != RETRIEVAL:
                positives.setdefault(t.label, set()).add(t.positive)
        clash = sorted(label for label, values in positives.items() if len(values) > 1)
        _check(not clash, "tasks", clash, "tasks sharing a label must agree on its `positive` value")
        binary_labels = {t.label for t in self.tasks if t.type == BINARY}
        _check(model.architecture != "esmm" or any(t.type == BINARY and t.given in binary_labels for t in self.tasks),
               "model.architecture", "esmm", "needs a binary task conditional on another binary task's label "
               "(purchase given click)")
        if model.architecture == "two_tower":
            unknown = set(model.query_features) - set(self.features.names)
            _check(not unknown, "model.query_features", sorted(unknown), "must be features")
            _check(set(self.features.names) - set(model.query_features), "model.query_features",
                   model.query_features, "leaves no feature for the item tower")
        overlap = set(self.features.names) & labels
        _check(not overlap, "features", sorted(overlap), "labels cannot be model inputs")
        for name in self.slices:
            _check(name in self.features.names, "slices", name, "must be a feature")
        text = self.text
        for table, names in text.fields.items():
            _check(table in TEXT_SOURCES, "text.fields", table, f"tables with text are {sorted(TEXT_SOURCES)}")
            _check(names, f"text.fields.{table}", names, "needs at least one field")
            _check(TEXT_SOURCES[table] in self.features.names, f"text.fields.{table}", TEXT_SOURCES[table],
                   "the table's id must be a feature (features.ids)")
        _check(not text.fields or self.data.source != "examples", "text.fields", sorted(text.fields),
               "needs the side tables of an event log (data.source synthetic, events or movielens-100k)")
        _check(not text.ablation or text.fields, "text.ablation", text.ablation,
               "compares a model with text features and one without: it needs text.fields")
        for table in text.unknown_ids_from_text:
            _check(table in TEXT_TABLES, "text.unknown_ids_from_text", table,
                   f"tables with ids are {sorted(TEXT_TABLES)}")
        _check(text.reduce_dim >= 0, "text.reduce_dim", text.reduce_dim, "must be 0 (no reduction) or a dimension")
        _check(1 <= text.max_length <= 512 and text.batch_size >= 1 and text.projection_dim >= 1, "text",
               (text.max_length, text.batch_size, text.projection_dim),
               "max_length must be in 1..512, batch_size and projection_dim >= 1")

    @property
    def raw_feature_names(self) -> List[str]:
        """The raw inputs the model reads: the configured features and those text features add."""
        return self.features.names + self.text.raw_features

    @property
    def label_keys(self) -> List[str]:
        labels = {t.label for t in self.tasks if t.type != RETRIEVAL}
        return sorted(labels | {t.given for t in self.tasks if t.given})

    @property
    def label_positives(self) -> Dict[str, str]:
        """{label: the value that means 1} for labels that binary tasks read with `positive`."""
        return {t.label: t.positive for t in self.tasks if t.positive}

    @property
    def evaluated_tasks(self) -> List[TaskConfig]:
        """Tasks TFMA evaluates per example; retrieval is measured over the whole catalogue instead."""
        return [t for t in self.tasks if t.kind.evaluated_by_tfma]

    @property
    def split_by_time(self) -> bool:
        return self.data.split == "time" and self.data.source != "examples"

    @property
    def has_test_split(self) -> bool:
        data = self.data
        return "test" in data.splits if data.splits else bool(data.test_days if self.split_by_time else data.test_percent)

    @property
    def split_names(self) -> List[str]:
        return [s for s in SPLIT_NAMES if s != "test" or self.has_test_split]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def without_text(self) -> "PipelineConfig":
        """The same pipeline without text features: the text ablation's model."""
        return dataclasses.replace(self, text=dataclasses.replace(self.text, fields={}, ablation=False))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def training_json(self) -> str:
        """Only what Transform and Trainer read, as their `custom_config`: changing a release gate,
        a slice or the data location then reuses TFX's cached Transform and Trainer runs."""
        tasks = [{k: v for k, v in dataclasses.asdict(t).items() if k != "gate"} for t in self.tasks]
        return json.dumps({"features": dataclasses.asdict(self.features), "tasks": tasks, "slices": [],
                           "model": dataclasses.asdict(self.model), "training": dataclasses.asdict(self.training),
                           "text": self._text_inputs()}, sort_keys=True)

    def _text_inputs(self) -> dict:
        """The text settings the model depends on (the encoder's are the TextEmbedder's; none
        without text fields, so a text setting does not retrain a model without text)."""
        text = self.text
        if not text.fields:
            return {}
        return {"fields": text.fields, "projection_dim": text.projection_dim, "match": text.match,
                "unknown_ids_from_text": text.unknown_ids_from_text, "reduce_dim": text.reduce_dim}

    def transform_json(self) -> str:
        """Only what Transform reads (features and label keys): a new architecture, weighting or
        task weight then reuses the cached Transform run."""
        tasks = [{"name": t.name, "type": t.type, "label": t.label, "given": t.given, "positive": t.positive}
                 for t in self.evaluated_tasks]
        return json.dumps({"features": dataclasses.asdict(self.features), "tasks": tasks, "slices": [],
                           "text": {"fields": self.text.fields}}, sort_keys=True)

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
        return cls.from_dict(cls.read_yaml(path))

    @staticmethod
    def read_yaml(path: str) -> dict:
        """The YAML mapping in `path`, unchecked: for merging command-line flags before `from_dict`."""
        try:
            with open(path) as f:
                raw = yaml.safe_load(f)
        except (OSError, yaml.YAMLError) as e:
            raise ConfigError(f"config file {path}: {e}") from e
        if raw is not None and not isinstance(raw, dict):
            raise ConfigError(f"config file {path}: expected a mapping at the top level")
        return raw or {}


def dataset_preset(dataset: str, path: str = "", protocol: str = "") -> dict:
    """Config overrides (YAML-shaped) that fit `dataset`; `protocol: tfrs` adds the TFRS multitask
    tutorial's split (random 80/20, seed 42)."""
    if dataset == "synthetic":
        return {}
    if dataset != "movielens-100k":
        raise ConfigError(f"config dataset={dataset!r}: must be one of {DATASETS}")
    preset = {
        "name": "mtrec-movielens", "model_name": "mtrec-movielens",
        "data": {"source": "movielens-100k", "path": path, "split": "hash", "eval_percent": 20, "schema": "infer"},
        "features": {"ids": ["user_id", "item_id"], "categorical": ["age_bucket", "region", "category"],
                     "numeric": ["user_tenure_days"]},
        "tasks": [
            {"name": "rating", "type": REGRESSION, "loss": "mse", "gate": {"bound": 1.05, "tolerance": 0.02}},
            {"name": "like", "type": BINARY, "gate": {"bound": 0.7, "tolerance": 0.01}},
            {"name": "retrieval", "type": RETRIEVAL},
        ],
        "model": {"architecture": "two_tower", "embedding_dim": 32, "embedding_l2": 0.0, "bottom_units": [64],
                  "tower_units": [64, 32], "query_features": ["user_id", "age_bucket", "region", "user_tenure_days"]},
        # No id dropout: a random split leaves almost no id unseen, and the TFRS figures are without it.
        "training": {"batch_size": 1024, "learning_rate": 0.003, "epochs": 30, "patience": 3, "id_dropout": 0.0},
        "slices": ["age_bucket"],
    }
    if protocol == "tfrs":
        preset["data"]["split_seed"] = 42
        preset["protocol"] = "tfrs"
    return preset


def default_synthetic_text(raw: dict, given: dict) -> None:
    """Sets the synthetic log's text fields in `raw` (a config dict) when it reads that log and
    `given` (the user's own settings) names no `text.fields`: `mtrec run`'s default, and the benches'."""
    if (raw.get("data") or {}).get("source", DataConfig.source) == "synthetic" and \
            "fields" not in (given.get("text") or {}):
        raw.setdefault("text", {})["fields"] = dict(SYNTHETIC_TEXT_FIELDS)


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
    if origin in (dict, Dict):
        if not isinstance(value, dict):
            raise ConfigError(f"config {path}={value!r}: expected a mapping")
        key_hint, value_hint = typing.get_args(hint)
        return {_convert(key_hint, k, path): _convert(value_hint, v, f"{path}.{k}") for k, v in value.items()}
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


@dataclass
class ServingConfig:
    """The local model server (`mtrec serve`), with TF Serving's defaults where it has one.

    `host` is loopback unless told otherwise. `rest_port` 0 turns REST off; a `grpc_port` of 0 takes
    any free port. `max_batch_size` (0: no limit) refuses larger requests with INVALID_ARGUMENT.
    `intra_op_threads`/`inter_op_threads` size the TF session (0: TensorFlow picks; an
    `inter_op_threads` of -1 runs a request's ops in the gRPC worker that took it: a batch-1 Session
    call of the default model takes 0.23 ms instead of 0.29-0.37, but over gRPC its gain and its
    cost to 8 clients' throughput are both within this machine's noise: bench/README).
    `enable_batching` merges concurrent requests into one session call on `batch_threads` threads
    (TF Serving's --enable_batching; merged batches stay within `max_batch_size` rows).
    `tls_cert_file` and `tls_key_file` (PEM, both or neither) serve gRPC over TLS.
    `poll_seconds` is how often the model base path is checked for new versions.
    `request_log_dir` (default none) keeps `request_log_rate` of the Predict calls there as TF
    Serving's `PredictionLog` records, what `mtrec skew` compares with the training data.
    """

    host: str = "127.0.0.1"
    grpc_port: int = 8500
    rest_port: int = 8501
    max_message_bytes: int = 64 * 1024 * 1024
    max_batch_size: int = 1024
    poll_seconds: float = 1.0
    grpc_workers: int = 16
    intra_op_threads: int = 1
    inter_op_threads: int = 2
    enable_batching: bool = False
    batch_threads: int = 2
    tls_cert_file: str = ""
    tls_key_file: str = ""
    request_log_dir: str = ""
    request_log_rate: float = 0.1

    def __post_init__(self):
        for name in ("grpc_port", "rest_port"):
            _check(0 <= getattr(self, name) < 65536, name, getattr(self, name), "must be a port number or 0")
        for name in ("max_message_bytes", "grpc_workers", "batch_threads"):
            _check(getattr(self, name) >= 1, name, getattr(self, name), "must be >= 1")
        for name in ("max_batch_size", "intra_op_threads"):
            _check(getattr(self, name) >= 0, name, getattr(self, name), "must be >= 0")
        _check(self.inter_op_threads >= -1, "inter_op_threads", self.inter_op_threads,
               "must be >= -1 (-1: the calling thread, 0: TensorFlow picks)")
        _check(self.poll_seconds > 0, "poll_seconds", self.poll_seconds, "must be > 0")
        _check(0 < self.request_log_rate <= 1, "request_log_rate", self.request_log_rate, "must be in (0, 1]")
        _check(bool(self.tls_cert_file) == bool(self.tls_key_file), "tls_cert_file", self.tls_cert_file,
               "needs tls_key_file too (both or neither)")
