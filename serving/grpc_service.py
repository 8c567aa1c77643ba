"""The gRPC front end: tensorflow.serving.PredictionService and ModelService, and grpc.health.v1."""
from __future__ import annotations

import grpc
from absl import logging
from grpc_health.v1 import health_pb2
from tensorflow_serving.apis import (get_model_status_pb2, model_management_pb2, model_service_pb2_grpc,
                                     prediction_service_pb2_grpc, status_pb2)

from mtrec.serving import api
from mtrec.serving.manager import ModelManager
from mtrec.serving.status import ServingError

_STATES = get_model_status_pb2.ModelVersionStatus.State


def _answer(context, work):
    """Runs `work`; a refusal becomes its status code, anything else INTERNAL, never a crash."""
    try:
        return work()
    except ServingError as error:
        context.abort(error.code, error.message)
    except Exception as error:  # noqa: BLE001 - report, keep serving
        logging.exception("request failed")
        context.abort(grpc.StatusCode.INTERNAL, f"{type(error).__name__}: {error}")


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    """`request_log`: a `RequestLogger` that answered Predict calls are shown to (sampled there)."""

    def __init__(self, manager: ModelManager, request_log=None):
        self.manager, self.request_log = manager, request_log

    def _on(self, handler, spec_of=lambda request: request.model_spec):
        return lambda request, context: _answer(
            context, lambda: handler(self.manager.resolve(spec_of(request)), request))

    def Predict(self, request, context):
        response = self._on(api.predict)(request, context)
        if self.request_log is not None:
            try:
                self.request_log.predict(request, response)
            except Exception:  # noqa: BLE001 - a full disk must not fail the answer
                logging.exception("request log write failed")
        return response

    def Classify(self, request, context):
        return self._on(api.classify)(request, context)

    def Regress(self, request, context):
        return self._on(api.regress)(request, context)

    def MultiInference(self, request, context):
        if not request.tasks:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "MultiInferenceRequest has no tasks")
        return self._on(api.multi_inference, lambda r: r.tasks[0].model_spec)(request, context)

    def GetModelMetadata(self, request, context):
        return self._on(api.metadata)(request, context)


def model_status_response(manager: ModelManager, spec) -> get_model_status_pb2.GetModelStatusResponse:
    version = manager.requested_version(spec)
    response = get_model_status_pb2.GetModelStatusResponse()
    for status in manager.status(spec.name, version):
        entry = response.model_version_status.add(version=status.version, state=_STATES.Value(status.state))
        entry.status.SetInParent()  # OK, unless:
        if status.error:
            entry.status.error_code = grpc.StatusCode.UNKNOWN.value[0]
            entry.status.error_message = status.error
    return response


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, manager: ModelManager):
        self.manager = manager

    def GetModelStatus(self, request, context):
        return _answer(context, lambda: model_status_response(self.manager, request.model_spec))

    def HandleReloadConfigRequest(self, request, context):
        def reload():
            self.manager.reload_config(request.config)
            return model_management_pb2.ReloadConfigResponse(status=status_pb2.StatusProto(error_code=0))
        return _answer(context, reload)


SERVING, NOT_SERVING = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
