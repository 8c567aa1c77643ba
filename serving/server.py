"""The local model server: TF Serving's gRPC and REST APIs over a versioned model directory.

    server = ModelServer(model_server_config("mtrec", "work/serving/mtrec"), ServingConfig(grpc_port=0))
    with server:            # loads what is on disk, binds 127.0.0.1, starts watching for versions
        server.grpc_port    # the bound port

`serve` runs one until SIGTERM or SIGINT, then drains in-flight requests and exits.
"""
from __future__ import annotations

import signal
import threading
from concurrent import futures

import grpc
from absl import logging
from grpc_health.v1 import health, health_pb2_grpc
from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc
from tensorflow_serving.config import model_server_config_pb2

from mtrec.config import ServingConfig
from mtrec.serving import rest
from mtrec.serving.batching import Batcher
from mtrec.serving.grpc_service import NOT_SERVING, SERVING, ModelService, PredictionService
from mtrec.serving.manager import ModelManager
from mtrec.serving.request_log import RequestLogger
from mtrec.serving.servable import session_config

HEALTH_SERVICES = ("", "tensorflow.serving.PredictionService", "tensorflow.serving.ModelService")


class ModelServer:
    def __init__(self, models: model_server_config_pb2.ModelServerConfig, options: ServingConfig = ServingConfig(),
                 on_event=logging.info):
        self.options = options
        session = session_config(options)
        self.batcher = Batcher(options.max_batch_size, options.batch_threads) if options.enable_batching else None
        self.manager = ModelManager(models, options.poll_seconds, session, options.max_batch_size, self.batcher, on_event)
        self.grpc_port = self.rest_port = None
        self._grpc = self._rest = None
        self._health = health.HealthServicer()
        self._stopped = threading.Event()
        self.request_log = (RequestLogger(options.request_log_dir, options.request_log_rate)
                            if options.request_log_dir else None)

    def start(self) -> "ModelServer":
        self.manager.start()
        size = self.options.max_message_bytes
        self._grpc = grpc.server(futures.ThreadPoolExecutor(self.options.grpc_workers, thread_name_prefix="grpc"),
                                 options=[("grpc.max_receive_message_length", size),
                                          ("grpc.max_send_message_length", size), ("grpc.so_reuseport", 0)])
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionService(self.manager, self.request_log),
                                                                  self._grpc)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(self.manager), self._grpc)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._grpc)
        address = f"{self.options.host}:{self.options.grpc_port}"
        if self.options.tls_cert_file:
            with open(self.options.tls_key_file, "rb") as key, open(self.options.tls_cert_file, "rb") as cert:
                credentials = grpc.ssl_server_credentials([(key.read(), cert.read())])
            self.grpc_port = self._grpc.add_secure_port(address, credentials)
        else:
            self.grpc_port = self._grpc.add_insecure_port(address)
        if not self.grpc_port:
            raise OSError(f"cannot bind gRPC to {self.options.host}:{self.options.grpc_port}")
        self._grpc.start()
        if self.options.rest_port:
            self._start_rest(self.options.rest_port)
        for service in HEALTH_SERVICES:
            self._health.set(service, SERVING)
        return self

    def _start_rest(self, port: int) -> None:
        self._rest = rest.rest_server(self.manager, self.options.host, port, self.options.max_message_bytes)
        self.rest_port = self._rest.server_address[1]
        threading.Thread(target=self._rest.serve_forever, name="rest", daemon=True).start()

    def stop(self, grace: float = 5.0) -> None:
        """Stops taking requests, lets in-flight ones finish (up to `grace` seconds), unloads."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        for service in HEALTH_SERVICES:
            self._health.set(service, NOT_SERVING)
        if self._rest:
            self._rest.shutdown()
            self._rest.server_close()
        if self._grpc:
            self._grpc.stop(grace).wait()
        self.manager.stop()
        if self.batcher:
            self.batcher.stop()
        if self.request_log:
            self.request_log.close()

    def wait(self) -> None:
        self._stopped.wait()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def serve(models: model_server_config_pb2.ModelServerConfig, options: ServingConfig, on_event=print) -> None:
    """Runs a server in the foreground until SIGTERM/SIGINT (graceful: in-flight requests finish)."""
    server = ModelServer(models, options, on_event)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: threading.Thread(target=server.stop).start())
    server.start()
    rest_note = f", REST on {options.host}:{server.rest_port}" if server.rest_port else ""
    on_event(f"serving {', '.join(server.manager.model_names)}: gRPC on {options.host}:{server.grpc_port}{rest_note}")
    server.wait()
    on_event("server stopped")
