"""A small client for TF Serving's gRPC API: the same code talks to real `tensorflow_model_server`
and to `mtrec serve`.

    client = ServingClient("127.0.0.1:8500", "mtrec")
    client.predict({"user_id": ["u1", "u2"], "item_id": ["i3", "i4"], ...})   # {"click": array, ...}
    client.predict_examples([{"user_id": "u1", ...}])                          # via serialized tf.Example
    client.recommend(user, candidates, weights={"click": 1.0, "like": 0.5}, k=10)

Inputs are typed from the model's signature (fetched once with GetModelMetadata). Every call has
a deadline; UNAVAILABLE is retried with backoff by gRPC's own retry policy (a server restarting or
a version swap in flight); TLS with `root_certificates`.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Dict, List, Mapping, Optional, Sequence, Union

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2, model_management_pb2,
                                     model_service_pb2_grpc, predict_pb2, prediction_service_pb2_grpc)

from mtrec.serving.signatures import BLEND_OUTPUT, RANK, SERVING_DEFAULT, SERVING_RAW, WEIGHT_PREFIX, missing_value

Features = Union[Mapping[str, Sequence], Sequence[Mapping[str, object]]]


def _retry_policy(attempts: int) -> str:
    return json.dumps({"methodConfig": [{
        "name": [{"service": "tensorflow.serving.PredictionService"}, {"service": "tensorflow.serving.ModelService"}],
        "retryPolicy": {"maxAttempts": attempts, "initialBackoff": "0.1s", "maxBackoff": "2s",
                        "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]}}]})


def columns(features: Features) -> Dict[str, list]:
    """Rows ([{name: value}]) or columns ({name: [values]}) as columns; a lone value is a batch of
    one. A feature some rows lack is None (missing) in those rows."""
    if isinstance(features, Mapping):
        return {k: list(v) if isinstance(v, (list, tuple, np.ndarray)) else [v] for k, v in features.items()}
    rows = list(features)
    names = sorted(set().union(*rows)) if rows else []
    return {n: [r.get(n) for r in rows] for n in names}


def to_example(row: Mapping[str, object], dtypes: Mapping[str, tf.DType]) -> tf.train.Example:
    """One tf.Example, each feature typed by the model's signature (else by its Python type); a
    value of None is a missing value, left out of the example."""
    example = tf.train.Example()
    for name, value in row.items():
        if value is None:
            continue
        values = list(value) if isinstance(value, (list, tuple, np.ndarray)) else [value]
        dtype = dtypes.get(name) or (tf.string if isinstance(values[0], (str, bytes)) else
                                     tf.int64 if isinstance(values[0], (int, np.integer)) else tf.float32)
        feature = example.features.feature[name]
        if dtype == tf.string:
            feature.bytes_list.value.extend([v if isinstance(v, bytes) else str(v).encode() for v in values])
        elif dtype.is_integer:
            feature.int64_list.value.extend([int(v) for v in values])
        else:
            feature.float_list.value.extend([float(v) for v in values])
    return example


@dataclasses.dataclass
class Recommendation:
    item: Mapping[str, object]
    score: float
    task_scores: Dict[str, float]


class ServingClient:
    def __init__(self, target: str, model_name: str, timeout: float = 5.0, retries: int = 4,
                 root_certificates: Optional[bytes] = None, max_message_bytes: int = 64 * 1024 * 1024,
                 version: Optional[int] = None, label: Optional[str] = None):
        options = [("grpc.max_receive_message_length", max_message_bytes),
                   ("grpc.max_send_message_length", max_message_bytes),
                   ("grpc.enable_retries", 1), ("grpc.service_config", _retry_policy(retries))]
        self.channel = (grpc.secure_channel(target, grpc.ssl_channel_credentials(root_certificates), options)
                        if root_certificates is not None else grpc.insecure_channel(target, options))
        self.target, self.model_name, self.timeout, self.version, self.label = target, model_name, timeout, version, label
        self._prediction = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self._models = model_service_pb2_grpc.ModelServiceStub(self.channel)
        self._signatures = None

    def close(self) -> None:
        self.channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _spec(self, target, signature: str = "") -> None:
        target.name, target.signature_name = self.model_name, signature
        if self.version is not None:
            target.version.value = self.version
        elif self.label:
            target.version_label = self.label

    # --- model information ----------------------------------------------------------------------
    def metadata(self) -> Dict[str, object]:
        """{signature name: SignatureDef} of the version this client is pointed at."""
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        self._spec(request.model_spec)
        response = self._prediction.GetModelMetadata(request, timeout=self.timeout)
        signatures = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signatures)
        self._signatures = dict(signatures.signature_def)
        return self._signatures

    def status(self) -> List[Dict[str, object]]:
        """[{version, state, error}] for every version the server knows of, newest first."""
        request = get_model_status_pb2.GetModelStatusRequest()
        self._spec(request.model_spec)
        response = self._models.GetModelStatus(request, timeout=self.timeout)
        state = get_model_status_pb2.ModelVersionStatus.State
        return [{"version": s.version, "state": state.Name(s.state), "error": s.status.error_message}
                for s in response.model_version_status]

    def reload_config(self, config) -> None:
        self._models.HandleReloadConfigRequest(model_management_pb2.ReloadConfigRequest(config=config),
                                               timeout=max(self.timeout, 60.0))

    def input_dtypes(self, signature: str) -> Dict[str, tf.DType]:
        signatures = self._signatures if self._signatures is not None else self.metadata()
        if signature not in signatures:
            raise ValueError(f"model {self.model_name} has no signature {signature!r}: {sorted(signatures)}")
        return {k: tf.as_dtype(v.dtype) for k, v in signatures[signature].inputs.items()}

    # --- predictions ------------------------------------------------------------------------------
    def predict_tensors(self, inputs: Mapping[str, np.ndarray], signature: str = SERVING_DEFAULT,
                        output_filter: Sequence[str] = ()) -> Dict[str, np.ndarray]:
        request = predict_pb2.PredictRequest(output_filter=list(output_filter))
        self._spec(request.model_spec, signature)
        for name, value in inputs.items():
            request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
        response = self._prediction.Predict(request, timeout=self.timeout)
        return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}

    def _typed(self, features: Features, signature: str) -> Dict[str, np.ndarray]:
        dtypes = self.input_dtypes(signature)
        inputs = {}
        for name, values in columns(features).items():
            dtype = dtypes.get(name, tf.string)
            values = [missing_value(dtype) if v is None else v for v in values]  # None: the signature's sentinel
            inputs[name] = (np.array([v if isinstance(v, bytes) else str(v).encode() for v in values], dtype=object)
                            if dtype == tf.string else np.array(values, dtype=dtype.as_numpy_dtype))
        return inputs

    def predict(self, features: Features, signature: str = SERVING_RAW,
                output_filter: Sequence[str] = ()) -> Dict[str, np.ndarray]:
        """Per-task scores for raw features, sent as one tensor per feature; {task: [batch] array}.
        A value of None is sent as the signature's missing-value sentinel (empty string, NaN,
        int64 minimum; `mtrec.serving.signatures`), so a row may lack any optional feature."""
        return _flat(self.predict_tensors(self._typed(features, signature), signature, output_filter))

    def predict_examples(self, features: Features, signature: str = SERVING_DEFAULT,
                         output_filter: Sequence[str] = ()) -> Dict[str, np.ndarray]:
        """Per-task scores for raw features, sent as serialized tf.Examples (None: left out)."""
        table = columns(features)
        signatures = self._signatures if self._signatures is not None else self.metadata()
        dtypes = self.input_dtypes(SERVING_RAW) if SERVING_RAW in signatures else {}
        size = len(next(iter(table.values()))) if table else 0
        examples = [to_example({k: v[i] for k, v in table.items()}, dtypes).SerializeToString() for i in range(size)]
        key = next(iter(self.input_dtypes(signature)))
        return _flat(self.predict_tensors({key: np.array(examples, dtype=object)}, signature, output_filter))

    def recommend(self, context: Mapping[str, object], candidates: Sequence[Mapping[str, object]],
                  weights: Mapping[str, float], k: int = 10, server_side: bool = False) -> List[Recommendation]:
        """Top-`k` candidates for one user/context by the blend sum(w_task * score_task).

        Scores every candidate in one request. With `server_side`, the model's `rank` signature
        computes the blend in the serving graph; otherwise it is computed here from the task scores.
        A model input that neither the context nor a candidate has is sent as missing (e.g. an
        item's `item_reviews_before`: then every review the model knows).
        """
        if not candidates:
            return []
        rows = [{**context, **item} for item in candidates]
        if server_side:
            dtypes = self.input_dtypes(RANK)
            tasks = sorted(n[len(WEIGHT_PREFIX):] for n in dtypes if n.startswith(WEIGHT_PREFIX))
            _check_tasks(weights, tasks)
            inputs = self._typed([{n: r.get(n) for n in dtypes if not n.startswith(WEIGHT_PREFIX)} for r in rows], RANK)
            inputs.update({WEIGHT_PREFIX + t: np.float32(weights.get(t, 0.0)) for t in tasks})
            scores = _flat(self.predict_tensors(inputs, RANK))
            blend = scores.pop(BLEND_OUTPUT)
        else:
            dtypes = self.input_dtypes(SERVING_RAW)
            scores = self.predict([{n: r.get(n) for n in dtypes} for r in rows])
            _check_tasks(weights, sorted(scores))
            blend = sum(w * scores[t] for t, w in weights.items())
        scores = {t: s for t, s in scores.items() if s.ndim == 1}  # task scores, not embeddings
        order = np.argsort(-blend, kind="stable")[:k]
        return [Recommendation(candidates[i], float(blend[i]), {t: float(s[i]) for t, s in scores.items()})
                for i in order]


def _check_tasks(weights: Mapping[str, float], tasks: Sequence[str]) -> None:
    unknown = sorted(set(weights) - set(tasks))
    if unknown:
        raise ValueError(f"weights name tasks the model does not have: {unknown} (tasks: {list(tasks)})")


def _flat(outputs: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """[batch, 1] task scores as [batch]; other outputs as they are."""
    return {k: v.reshape(-1) if v.ndim == 2 and v.shape[1] == 1 else v for k, v in outputs.items()}
