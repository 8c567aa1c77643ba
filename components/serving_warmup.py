"""ServingWarmup: checks the trained model the way a model server will load it, and leaves
TF Serving warm-up records beside it.

Builds Predict requests from eval examples with TFX's InfraValidator request builder, loads the
SavedModel in a TF Session as TF Serving does (`mtrec.serving.Servable`) and answers each; a
model that fails to load, answers with an error or with non-finite scores is not blessed and the
Pusher does not push it. A good one is written, with `assets.extra/tf_serving_warmup_requests`
(PredictionLog records, replayed by TF Serving before the version takes traffic), into an
InfraBlessing artifact: the same contract InfraValidator(make_warmup=True) has with the Pusher,
which then pushes this copy. InfraValidator itself needs a TF Serving binary or Docker; this
needs neither.
"""
import os

import numpy as np
import tensorflow as tf
from absl import logging
from tensorflow_serving.apis import prediction_log_pb2
from tfx.components.infra_validator import request_builder
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.proto import infra_validator_pb2
from tfx.types.standard_artifacts import Examples, InfraBlessing, Model
from tfx.utils import io_utils, path_utils

from mtrec.serving import api
from mtrec.serving.servable import Servable
from mtrec.serving.signatures import SERVING_DEFAULT


def warmup_requests(model_name: str, model, examples, num_examples: int):
    spec = infra_validator_pb2.RequestSpec(
        tensorflow_serving=infra_validator_pb2.TensorFlowServingRequestSpec(signature_names=[SERVING_DEFAULT]),
        split_name="eval", num_examples=num_examples)
    return request_builder.build_requests(model_name, model, examples, spec)


def serving_problem(model_name: str, model_path: str, requests) -> str:
    """Why the model at `model_path` would fail in a model server ("" if it would not): it must
    load, answer every request and give finite scores."""
    if not requests:
        return "no eval examples to build warm-up requests from"
    try:
        servable = Servable(model_name, 0, model_path)
        try:
            for request in requests:
                for task, proto in api.predict(servable, request).outputs.items():
                    values = tf.make_ndarray(proto)
                    if not np.all(np.isfinite(values)):
                        return f"output {task} is not finite: {values.reshape(-1)[:5]}"
        finally:
            servable.close()
    except Exception as error:  # noqa: BLE001 - any failure is the answer
        return f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"
    return ""


@component
def ServingWarmup(model: InputArtifact[Model], examples: InputArtifact[Examples],
                  blessing: OutputArtifact[InfraBlessing], model_name: Parameter[str] = "mtrec",
                  num_examples: Parameter[int] = 100) -> None:
    model_path = path_utils.serving_model_path(model.uri)
    requests = warmup_requests(model_name, model, examples, num_examples)
    problem = serving_problem(model_name, model_path, requests)
    if problem:
        logging.error("ServingWarmup: model %s not blessed: %s", model_path, problem)
        io_utils.write_string_file(os.path.join(blessing.uri, "INFRA_NOT_BLESSED"), problem)
        blessing.set_int_custom_property("blessed", 0)
        blessing.set_string_custom_property("problem", problem[:1000])
        return
    warm_model = path_utils.stamped_model_path(blessing.uri)
    io_utils.copy_dir(src=model_path, dst=warm_model)
    io_utils.write_tfrecord_file(
        path_utils.warmup_file_path(warm_model),
        *[prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=r)) for r in requests])
    io_utils.write_string_file(os.path.join(blessing.uri, "INFRA_BLESSED"), "")
    blessing.set_int_custom_property("blessed", 1)
    blessing.set_int_custom_property("has_model", 1)  # the Pusher pushes this copy
    blessing.set_int_custom_property("warmup_requests", len(requests))
    logging.info("ServingWarmup: %d warm-up requests answered; warm model at %s", len(requests), warm_model)
