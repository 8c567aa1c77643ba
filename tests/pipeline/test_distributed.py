"""The Trainer under tf.distribute, on the shared small run's real Transform output.

The small run itself trained with MirroredStrategy over 2 logical CPUs under LocalDagRunner. Here
TFX's own Trainer executor is started again, each time in fresh processes through
`tfx.scripts.run_executor` (how TFX runs an executor on a remote worker), with the inputs and
execution properties MLMD recorded for that Trainer: on one device, and as a 2-worker
MultiWorkerMirroredStrategy cluster on 127.0.0.1 (TF_CONFIG), killed mid-training and restarted.
"""
import glob
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import tensorflow as tf
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tfx.types import artifact_utils, standard_artifacts

from mtrec.pipeline.training import TRAINING_LOG
from tests.conftest import SMALL_RUN
from tests.serving.conftest import free_port

pytestmark = SMALL_RUN
TRAINER = "mtrec.components.trainer.Trainer"
EXECUTOR = "mtrec.components.trainer.Executor"


def recorded_trainer(metadata: str):
    """(inputs JSON, exec properties, training.json) of the run's multi-task Trainer, from MLMD."""
    connection = metadata_store_pb2.ConnectionConfig()
    connection.sqlite.filename_uri = metadata
    store = metadata_store.MetadataStore(connection)
    # the node named Trainer: the single-task and no-text Trainers are of the same type
    node = next(c for c in store.get_contexts_by_type("node") if c.name.split(".", 1)[-1] == "Trainer")
    execution = [e for e in store.get_executions_by_context(node.id)
                 if e.last_known_state == metadata_store_pb2.Execution.COMPLETE][-1]
    events = store.get_events_by_execution_ids([execution.id])
    artifacts = {a.id: a for a in store.get_artifacts_by_id([e.artifact_id for e in events])}
    types = {t.id: t for t in store.get_artifact_types_by_id(list({a.type_id for a in artifacts.values()}))}
    inputs, run_dir = {}, None
    for event in events:
        artifact = artifacts[event.artifact_id]
        key = event.path.steps[0].key
        if event.type == metadata_store_pb2.Event.INPUT:
            inputs.setdefault(key, []).append(artifact_utils.deserialize_artifact(types[artifact.type_id], artifact))
        elif key == "model_run":
            run_dir = artifact.uri
    properties = {k: v.string_value for k, v in execution.custom_properties.items()}
    with open(os.path.join(run_dir, TRAINING_LOG)) as f:
        return artifact_utils.jsonify_artifact_dict(inputs), properties, json.load(f)


def with_training(properties: dict, **training) -> dict:
    """The recorded exec properties with training settings changed."""
    custom = json.loads(properties["custom_config"])
    config = json.loads(custom["config"])
    config["training"].update(training)
    custom["config"] = json.dumps(config)
    return {**properties, "custom_config": json.dumps(custom)}


def start_trainer(inputs: str, properties: dict, out_dir, tf_config=None, log=None) -> subprocess.Popen:
    model, run = standard_artifacts.Model(), standard_artifacts.ModelRun()
    model.uri, run.uri = str(out_dir / "model"), str(out_dir / "model_run")
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1"}
    env.pop("TF_CONFIG", None)
    if tf_config:
        env["TF_CONFIG"] = json.dumps(tf_config)
    return subprocess.Popen(
        [sys.executable, "-m", "tfx.scripts.run_executor", f"--executor_class_path={EXECUTOR}", f"--inputs={inputs}",
         f"--outputs={artifact_utils.jsonify_artifact_dict({'model': [model], 'model_run': [run]})}",
         f"--exec-properties={json.dumps(properties)}"],
        env=env, stdout=log or subprocess.DEVNULL, stderr=subprocess.STDOUT)


def cluster(ports):
    workers = [f"127.0.0.1:{p}" for p in ports]
    return [{"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}} for i in range(len(workers))]


def finish(processes, seconds=600):
    for process in processes:
        assert process.wait(timeout=seconds) == 0


def training_log(out_dir) -> dict:
    with open(out_dir / "model_run" / TRAINING_LOG) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def trainer(small_run):
    return recorded_trainer(small_run.metadata)


def test_mirrored_on_two_logical_cpus_trains_as_well_as_one_device(trainer, tmp_path):
    inputs, properties, single = trainer
    assert (single["strategy"], single["replicas"]) == ("one_device", 1)
    # The same global batch (2 replicas x 256 against 512 on one device) and the same data order.
    process = start_trainer(inputs, with_training(properties, strategy="mirrored", logical_cpu_devices=2,
                                                  batch_size=256), tmp_path)
    finish([process])
    mirrored = training_log(tmp_path)
    assert (mirrored["strategy"], mirrored["replicas"]) == ("mirrored", 2)
    assert single["epochs"] == mirrored["epochs"] == 3
    for metric in ("click_auc", "like_auc", "purchase_auc", "loss"):
        assert abs(single["eval"][metric] - mirrored["eval"][metric]) < 2e-3, metric


def test_two_workers_resume_after_a_kill_and_only_the_chief_exports(trainer, tmp_path):
    inputs, properties, _ = trainer
    backup = tmp_path / "backup"
    properties = with_training(properties, strategy="multi_worker_mirrored", logical_cpu_devices=0, epochs=3,
                               patience=100, batch_size=96, backup_dir=str(backup))
    configs = cluster([free_port(), free_port()])
    log = open(tmp_path / "first_attempt.log", "w")
    workers = [start_trainer(inputs, properties, tmp_path, tf_config, log) for tf_config in configs]
    deadline = time.time() + 300
    while not glob.glob(str(backup / "**" / "checkpoint"), recursive=True):
        assert time.time() < deadline and all(w.poll() is None for w in workers), "no backup before training ended"
        time.sleep(0.5)
    workers[1].send_signal(signal.SIGKILL)
    # The survivor cannot finish without its peer: a cluster manager restarts the whole job.
    workers[0].kill()
    workers[0].wait()
    assert not (tmp_path / "model" / "Format-Serving" / "saved_model.pb").exists()

    restarted = [start_trainer(inputs, properties, tmp_path, tf_config) for tf_config in configs]
    finish(restarted)
    log = training_log(tmp_path)
    assert (log["strategy"], log["replicas"]) == ("multi_worker_mirrored", 2)
    assert log["first_epoch"] >= 1  # resumed, not started over
    assert log["first_epoch"] + log["epochs"] == 3
    assert log["eval"]["click_auc"] > 0.5
    model = tf.saved_model.load(str(tmp_path / "model" / "Format-Serving"))  # written by the chief
    assert {"serving_default", "serving_raw", "rank", "evaluate"} <= set(model.signatures)
    assert not glob.glob(str(tmp_path / "model_run" / "workertemp_*"))  # the other worker's copy is gone
    assert not glob.glob(str(backup / "**" / "checkpoint"), recursive=True)  # backups go once training ends
