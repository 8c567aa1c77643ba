"""Faults the local server must survive: a version pushed under load, a corrupt or half-written
version, a kill and restart, SIGTERM. All on 127.0.0.1; every server and thread stops by itself."""
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import grpc
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2
from tfx.utils import io_utils

from mtrec.serving.client import ServingClient
from mtrec.serving.signatures import SERVING_RAW
from tests.conftest import SMALL_RUN
from tests.serving.conftest import MODEL, copy_model, free_port, start_local, user_rows, wait_serving

pytestmark = SMALL_RUN
MTREC = os.path.join(os.path.dirname(sys.executable), "mtrec")


def _wait_for(condition, seconds=120):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def test_a_version_pushed_under_load_swaps_in_without_a_failed_request(pushed, tmp_path):
    base = copy_model(pushed, tmp_path)
    old, new = pushed[1], pushed[1] + 1
    rows = user_rows(pushed[2], 4)
    events = []
    server = start_local(base, events)
    stop, failures, versions, counts = threading.Event(), [], set(), [0] * 8

    def load(i):
        with ServingClient(f"127.0.0.1:{server.grpc_port}", MODEL, timeout=30) as client:
            inputs = client._typed(rows, SERVING_RAW)
            while not stop.is_set():
                try:
                    response = client._prediction.Predict(_request(inputs), timeout=30)
                    versions.add(response.model_spec.version.value)
                    counts[i] += 1
                except grpc.RpcError as error:
                    failures.append(f"{error.code().name}: {error.details()}")

    threads = [threading.Thread(target=load, args=(i,), daemon=True) for i in range(8)]
    try:
        for t in threads:
            t.start()
        time.sleep(1.0)
        io_utils.copy_dir(os.path.join(base, str(old)), os.path.join(base, str(new)))  # as the Pusher copies
        assert _wait_for(lambda: new in versions and any(f"version {old} unloaded" in e for e in events)), events
        time.sleep(1.0)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
        server.stop()
    assert failures == []
    assert versions == {old, new} and min(counts) > 0, (versions, counts)
    assert any(f"version {new} available (100 warm-up requests replayed)" in e for e in events), events


def _request(inputs):
    request = predict_pb2.PredictRequest()
    request.model_spec.name, request.model_spec.signature_name = MODEL, SERVING_RAW
    for name, value in inputs.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
    return request


@pytest.mark.parametrize("damage", ["corrupt", "half_written"])
def test_a_broken_new_version_never_replaces_the_good_one(pushed, tmp_path, damage):
    base = copy_model(pushed, tmp_path)
    old, bad = pushed[1], pushed[1] + 5
    rows = user_rows(pushed[2], 2)
    server = start_local(base)
    try:
        target = os.path.join(base, str(bad))
        if damage == "corrupt":
            io_utils.copy_dir(os.path.join(base, str(old)), target)
            with open(os.path.join(target, "saved_model.pb"), "wb") as f:
                f.write(b"\x08\x01 this is not a SavedModel")
        else:  # the variables copied, saved_model.pb not yet
            io_utils.copy_dir(os.path.join(base, str(old), "variables"), os.path.join(target, "variables"))
        with ServingClient(f"127.0.0.1:{server.grpc_port}", MODEL) as client:
            assert _wait_for(lambda: any(s["version"] == bad for s in client.status()), 30), client.status()
            statuses = {s["version"]: s for s in client.status()}
            assert statuses[old]["state"] == "AVAILABLE"
            assert statuses[bad]["state"] == "END" and str(bad) in statuses[bad]["error"]
            assert client.predict(rows)["click"].shape == (2,)
            # repaired: the directory changes, the version is tried again and takes over
            shutil_copy_over(os.path.join(base, str(old)), target)
            assert _wait_for(lambda: {s["version"]: s["state"] for s in client.status()}.get(bad) == "AVAILABLE", 60)
            assert _wait_for(lambda: {s["version"]: s["state"] for s in client.status()}.get(old) == "END", 30)
    finally:
        server.stop()


def shutil_copy_over(source, target):
    shutil.rmtree(target)
    io_utils.copy_dir(source, target)


def test_killed_server_restarts_and_serves_the_same_directory_and_sigterm_is_graceful(pushed):
    base = pushed[0]
    port, rest_port = free_port(), free_port()
    command = [MTREC, "serve", "--model-base-path", base, "--port", str(port), "--rest-port", str(rest_port)]
    rows = user_rows(pushed[2], 3)
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    second = None
    try:
        wait_serving(f"127.0.0.1:{port}")
        with ServingClient(f"127.0.0.1:{port}", MODEL, timeout=5, retries=2) as client:
            before = client.predict(rows)["click"]
            first.kill()
            first.wait(timeout=30)
            with pytest.raises(grpc.RpcError) as down:
                client.predict(rows)
            assert down.value.code() == grpc.StatusCode.UNAVAILABLE
            second = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            wait_serving(f"127.0.0.1:{port}")
            grpc.channel_ready_future(client.channel).result(timeout=60)  # past gRPC's reconnect backoff
            after = client.predict(rows)["click"]  # the same client and channel reconnect
        assert after.tolist() == pytest.approx(before.tolist(), rel=1e-6)
        second.send_signal(signal.SIGTERM)
        output, _ = second.communicate(timeout=60)
        assert second.returncode == 0, output
        assert "server stopped" in output
    finally:
        for process in (first, second):
            if process and process.poll() is None:
                process.kill()
