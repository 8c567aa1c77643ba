"""Where and how the Trainer trains: tf.distribute strategy, mixed precision, preemption backups.

`training.strategy` picks the strategy:
  default                 TensorFlow's default (one device; a GPU if there is one).
  one_device              OneDeviceStrategy on the first GPU, else the CPU (no epoch backups:
                          Keras's BackupAndRestore does not support it).
  mirrored                MirroredStrategy: one replica per local GPU, all-reduced with NCCL; with no
                          GPU, one replica per logical CPU device (`logical_cpu_devices`).
  multi_worker_mirrored   MultiWorkerMirroredStrategy over the cluster in TF_CONFIG (NCCL on GPUs,
                          ring all-reduce on CPUs); the chief exports the model.

`training.batch_size` is per replica: the global batch is it times the replicas in sync, as
`tf.distribute` expects (losses are averaged over the global batch). Logical CPU devices must
exist before TensorFlow initialises its devices, so `mtrec run` configures them before any
component runs (LocalDagRunner runs every component in one process).
"""
from __future__ import annotations

import hashlib
import json
import os
import time

import tensorflow as tf
import tf_keras as keras
from absl import logging

from mtrec.config import TrainingConfig


def configure_logical_cpus(count: int) -> None:
    """Splits the host CPU into `count` logical devices (0: leave as is), for MirroredStrategy
    without GPUs. Must run before TensorFlow initialises its devices."""
    if count <= 0:
        return
    cpu = tf.config.list_physical_devices("CPU")[0]
    wanted = [tf.config.LogicalDeviceConfiguration() for _ in range(count)]
    current = tf.config.get_logical_device_configuration(cpu)
    if current is not None and len(current) == count:
        return
    try:
        tf.config.set_logical_device_configuration(cpu, wanted)
    except RuntimeError as e:
        raise RuntimeError(
            f"training.logical_cpu_devices={count}: TensorFlow's devices were initialised before they could be "
            f"configured ({len(tf.config.list_logical_devices('CPU'))} CPU device(s) now). Configure them before "
            "anything runs TensorFlow: `mtrec run` does; elsewhere call "
            "mtrec.pipeline.distribution.configure_logical_cpus first.") from e


def configure_threads(training: TrainingConfig) -> None:
    """Sizes TensorFlow's thread pools (`training.intra_op_threads`, `inter_op_threads`). They are
    fixed once TensorFlow's runtime starts: set too late (another library started it first), the
    pools stay as they are, which is slower but not wrong, so it warns and goes on."""
    threading = tf.config.threading
    try:
        if training.intra_op_threads:  # 0 leaves TensorFlow's default
            threading.set_intra_op_parallelism_threads(training.intra_op_threads)
        if training.inter_op_threads:
            threading.set_inter_op_parallelism_threads(training.inter_op_threads)
    except RuntimeError:
        logging.warning("training.intra_op_threads=%d, inter_op_threads=%d not applied: TensorFlow started "
                        "before with %d and %d; `mtrec run` sets them first, elsewhere call "
                        "mtrec.pipeline.distribution.configure_threads first", training.intra_op_threads,
                        training.inter_op_threads, threading.get_intra_op_parallelism_threads(),
                        threading.get_inter_op_parallelism_threads())


def cluster() -> dict:
    """TF_CONFIG as a dict ({} when not in a cluster)."""
    return json.loads(os.environ.get("TF_CONFIG") or "{}")


def is_chief() -> bool:
    """The chief (or worker 0 of a cluster without one) exports; a process outside a cluster is chief."""
    tf_config = cluster()
    if not tf_config.get("cluster"):
        return True
    task = tf_config.get("task", {})
    if task.get("type") in ("chief", "master"):
        return True
    return "chief" not in tf_config["cluster"] and task.get("type") == "worker" and task.get("index") == 0


def make_strategy(training: TrainingConfig) -> tf.distribute.Strategy:
    gpus = tf.config.list_physical_devices("GPU")  # physical: listing logical devices starts the runtime,
    # after which MultiWorkerMirroredStrategy can no longer set up its collectives
    if training.strategy == "one_device":
        return tf.distribute.OneDeviceStrategy("/gpu:0" if gpus else "/cpu:0")
    if training.strategy == "mirrored":
        if gpus:
            return tf.distribute.MirroredStrategy()  # every visible GPU, NCCL all-reduce
        cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(cpus, cross_device_ops=tf.distribute.ReductionToOneDevice())
    if training.strategy == "multi_worker_mirrored":
        if not cluster().get("cluster"):
            logging.warning("multi_worker_mirrored without a cluster in TF_CONFIG: training on this host alone")
        implementation = (tf.distribute.experimental.CommunicationImplementation.NCCL if gpus
                          else tf.distribute.experimental.CommunicationImplementation.RING)
        return tf.distribute.MultiWorkerMirroredStrategy(
            communication_options=tf.distribute.experimental.CommunicationOptions(implementation=implementation))
    return tf.distribute.get_strategy()


def set_precision(training: TrainingConfig) -> None:
    """Keras's global dtype policy; task outputs stay float32 (see models.layers)."""
    keras.mixed_precision.set_global_policy(training.mixed_precision or "float32")


def backup_dir(training: TrainingConfig, model_run_dir: str, key: str) -> str:
    """Where BackupAndRestore keeps the last finished epoch. Unless configured, beside the Trainer's
    outputs under a hash of what is trained on what (`key`): a restarted worker, or a rerun of the
    pipeline after a crash, finds the backup of the same training and resumes from it."""
    if training.backup_dir:
        return training.backup_dir
    trainer_root = os.path.dirname(os.path.dirname(model_run_dir.rstrip("/")))  # <root>/Trainer
    return os.path.join(trainer_root, "backup", hashlib.sha256(key.encode()).hexdigest()[:16])


def wait_for_chief_export(serving_model_dir: str, seconds: float = 600) -> None:
    """On a non-chief worker: TFX's Trainer executor checks the export exists, and the chief writes
    it to the same (shared) location; wait until it has."""
    deadline = time.time() + seconds
    while not tf.io.gfile.exists(os.path.join(serving_model_dir, "saved_model.pb")):
        if time.time() > deadline:
            raise TimeoutError(f"the chief did not export to {serving_model_dir} within {seconds:.0f}s")
        time.sleep(1)


def scratch_dir(model_run_dir: str) -> str:
    """A non-chief worker's own throw-away export dir (MWMS: every worker must take part in saving)."""
    task = cluster().get("task", {})
    return os.path.join(model_run_dir, f"workertemp_{task.get('type')}_{task.get('index')}")
