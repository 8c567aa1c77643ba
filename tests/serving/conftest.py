"""The pushed model of the shared small pipeline run (tests/conftest.py), and servers over its directory: ours always,
real `tensorflow_model_server` too when TF_SERVING_BIN names one (or it is on PATH)."""
import json
import os
import shutil
import socket
import subprocess
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mtrec.config import ServingConfig
from mtrec.serving.manager import model_server_config
from mtrec.serving.server import ModelServer

MODEL = "mtrec"
TF_SERVING_BIN = os.environ.get("TF_SERVING_BIN") or shutil.which("tensorflow_model_server")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def pushed(small_run):
    """(model base dir, version, logs dir): the Pusher output of the shared small pipeline run."""
    version_dir = small_run.summary["pushed_model"]
    return os.path.dirname(version_dir), int(os.path.basename(version_dir)), small_run.logs


def copy_model(pushed, tmp_path) -> str:
    """A private base dir holding the pushed version, for tests that add or break versions."""
    base, version, _ = pushed
    target = tmp_path / MODEL
    shutil.copytree(os.path.join(base, str(version)), target / str(version))
    return str(target)


def start_local(base: str, events=None, **options) -> ModelServer:
    config = ServingConfig(grpc_port=0, rest_port=free_port(), poll_seconds=0.2, **options)
    return ModelServer(model_server_config(MODEL, base), config,
                       on_event=(events.append if events is not None else lambda _: None)).start()


def wait_serving(target: str, seconds: float = 60) -> None:
    channel = grpc.insecure_channel(target)
    stub = health_pb2_grpc.HealthStub(channel)
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            if stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1).status == health_pb2.HealthCheckResponse.SERVING:
                return
        except grpc.RpcError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"no server answered health checks on {target}")


class Endpoint:
    """Where a server listens: `grpc` target and `rest` base URL."""

    def __init__(self, kind, grpc_target, rest_url, events=None):
        self.kind, self.grpc, self.rest, self.events = kind, grpc_target, rest_url, events


@pytest.fixture(scope="module", params=["local", "tf_serving"])
def endpoint(request, pushed):
    base, _, _ = pushed
    if request.param == "local":
        events = []
        server = start_local(base, events)
        yield Endpoint("local", f"127.0.0.1:{server.grpc_port}", f"http://127.0.0.1:{server.rest_port}", events)
        server.stop()
        return
    if not TF_SERVING_BIN:
        pytest.skip("no tensorflow_model_server: set TF_SERVING_BIN to run the contract tests against it")
    port, rest_port = free_port(), free_port()
    process = subprocess.Popen([TF_SERVING_BIN, f"--port={port}", f"--rest_api_port={rest_port}",
                                f"--model_name={MODEL}", f"--model_base_path={base}"])
    try:
        wait_serving(f"127.0.0.1:{port}")
        yield Endpoint("tf_serving", f"127.0.0.1:{port}", f"http://127.0.0.1:{rest_port}")
    finally:
        process.terminate()
        process.wait(timeout=30)


def user_rows(logs, count: int):
    """`count` realistic raw-feature rows: users and items from the log's own tables."""
    users = [json.loads(line) for line in open(logs / "users.jsonl")]
    items = [json.loads(line) for line in open(logs / "items.jsonl")]
    return [{"user_id": users[i % len(users)]["user_id"], "age_bucket": users[i % len(users)].get("age_bucket"),
             "region": users[i % len(users)].get("region"), "user_tenure_days": 10 + i, "device": "mobile",
             "page": "home", "hour": i % 24, "position": 1 + i % 5,
             "item_reviews_before": i % 7,  # reviews the item had when shown
             **{k: items[i % len(items)].get(k)  # None: left out of the log
                for k in ("item_id", "category", "price")}}
            for i in range(count)]
