"""One loaded model version, run the way TF Serving runs it: a TF Session over the SavedModel's
MetaGraph, fed and fetched by the tensor names of its SignatureDefs.

A Session callable per (signature, inputs, outputs) skips TF2's Python function-call layers: on
2 cores it takes a batch-1 call of our MMoE from ~0.9 ms (TF2 signature call) to ~0.4 ms. Requests are checked against
the SignatureDef first, so a bad one is refused with a message naming the input.
"""
from __future__ import annotations

import threading
from typing import Dict, Mapping, Sequence

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import config_pb2

from mtrec.serving.status import ServingError, invalid

DEFAULT_SIGNATURE = "serving_default"
_CODES = {code.value[0]: code for code in grpc.StatusCode}


_DTYPES: Dict[np.dtype, tf.DType] = {}


def array_dtype(array: np.ndarray) -> tf.DType:
    dtype = _DTYPES.get(array.dtype)
    if dtype is None:
        dtype = _DTYPES[array.dtype] = tf.string if array.dtype.kind in "OSU" else tf.as_dtype(array.dtype)
    return dtype


def session_config(options) -> config_pb2.ConfigProto:
    """The TF session options of every loaded version, from the server's `ServingConfig`.

    Function inlining: a signature of a TF2 SavedModel is a call of a function (the Transform
    graph and the network inside it); inlined, the Session's executor runs one flat graph instead
    of a call into a function runtime, which takes a batch-1 call of our MMoE from 0.31 to 0.26 ms
    (bench/README, Serving) with the same outputs to the bit. TF Serving's equivalent is the
    `session_config` of its `--platform_config_file` (not set in serving/deploy: untried here)."""
    config = config_pb2.ConfigProto(intra_op_parallelism_threads=options.intra_op_threads,
                                    inter_op_parallelism_threads=options.inter_op_threads)
    config.graph_options.optimizer_options.do_function_inlining = True
    return config


def _first_cause(message: str) -> str:
    """The line of a TF error that says what went wrong, not "Graph execution error:"."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(("Graph execution error", "Detected at node", "[["))]
    return (useful or lines or ["unknown error"])[0][:500]


class Servable:
    """A model version ready to answer: `signatures` are its SignatureDefs by name."""

    def __init__(self, name: str, version: int, path: str, session_config=None, max_batch_size: int = 0):
        self.name, self.version, self.path, self.max_batch_size = name, version, path, max_batch_size
        self._graph = tf.Graph()
        self._session = tf.compat.v1.Session(graph=self._graph, config=session_config)
        with self._graph.as_default():
            meta_graph = tf.compat.v1.saved_model.loader.load(self._session, [tf.saved_model.SERVING], path)
        self.signatures = {k: v for k, v in meta_graph.signature_def.items() if not k.startswith("__")}
        self._callables: Dict[tuple, object] = {}
        self._specs: Dict[str, dict] = {}
        self._batchable: Dict[str, bool] = {}
        self.batcher = None  # set by the manager when the server batches
        self._lock = threading.Lock()

    def signature(self, name: str):
        """The SignatureDef called `name` (default: serving_default), as TF Serving resolves it."""
        name = name or DEFAULT_SIGNATURE
        if name not in self.signatures:
            raise ServingError(grpc.StatusCode.FAILED_PRECONDITION,
                               f'Serving signature key "{name}" not found. '
                               f'Signatures: {", ".join(sorted(self.signatures))}.')
        return name, self.signatures[name]

    def run(self, signature_name: str, inputs: Mapping[str, np.ndarray],
            output_filter: Sequence[str] = ()) -> Dict[str, np.ndarray]:
        """Runs one signature on named arrays; returns {output alias: array}. With a batcher, the
        run may share one Session call with concurrent requests (see batching.py)."""
        name, aliases = self.check(signature_name, inputs, output_filter)
        if self.batcher is not None and self.batchable(name):
            return self.batcher.run(self, name, inputs, aliases)
        return self.execute(name, inputs, aliases)

    def check(self, signature_name: str, inputs: Mapping[str, np.ndarray], output_filter: Sequence[str] = ()):
        """(signature name, output aliases) for a valid request; ServingError naming the problem if not."""
        name, signature = self.signature(signature_name)
        self._check_inputs(name, signature, inputs)
        aliases = tuple(output_filter) or tuple(sorted(signature.outputs))
        for alias in aliases:
            if alias not in signature.outputs:
                raise invalid(f"output tensor alias not found in signature: {alias} Outputs expected to be in "
                              f"the set {{{','.join(sorted(signature.outputs))}}}.")
        if len(set(aliases)) != len(aliases):
            raise invalid(f"duplicate output tensor alias in output_filter: {list(output_filter)}")
        return name, aliases

    def execute(self, name: str, inputs: Mapping[str, np.ndarray], aliases: Sequence[str]) -> Dict[str, np.ndarray]:
        """One Session call for a checked request."""
        keys = sorted(inputs)
        run = self._callable(self.signatures[name], keys, aliases)
        try:
            values = run(*[inputs[key] for key in keys])
        except tf.errors.OpError as error:
            raise ServingError(_CODES.get(error.error_code, grpc.StatusCode.INTERNAL),
                               f"signature '{name}': {_first_cause(error.message)}") from None
        return dict(zip(aliases, values))

    def batchable(self, name: str) -> bool:
        """Whether every input and output of the signature has a leading batch dimension."""
        if name not in self._batchable:
            infos = list(self.signatures[name].inputs.values()) + list(self.signatures[name].outputs.values())
            self._batchable[name] = all(not i.tensor_shape.unknown_rank and i.tensor_shape.dim
                                        and i.tensor_shape.dim[0].size == -1 for i in infos)
        return self._batchable[name]

    def _callable(self, signature, keys, aliases):
        key = (id(signature), tuple(keys), tuple(aliases))
        run = self._callables.get(key)
        if run is None:
            with self._lock:
                # TF's own fast path (tf.keras 2 used it too): Session.make_callable falls back to
                # a full Session.run whenever there are feeds, which costs ~0.5 ms per call.
                feeds, fetches = [signature.inputs[k].name for k in keys], [signature.outputs[a].name for a in aliases]
                fast = getattr(self._session, "_make_callable_from_options", None)
                run = (fast(config_pb2.CallableOptions(feed=feeds, fetch=fetches)) if fast
                       else self._session.make_callable(fetches, feeds))
                self._callables[key] = run
        return run

    def _input_specs(self, name, signature):
        """{input: (dtype, dims or None)} of a signature, computed once."""
        specs = self._specs.get(name)
        if specs is None:
            specs = {key: (tf.as_dtype(info.dtype), None if info.tensor_shape.unknown_rank
                           else tuple(d.size for d in info.tensor_shape.dim))
                     for key, info in signature.inputs.items()}
            self._specs[name] = specs
        return specs

    def _check_inputs(self, name, signature, inputs):
        specs = self._input_specs(name, signature)
        if inputs.keys() != specs.keys():
            sent, expected = set(inputs), set(specs)
            raise invalid(
                f"input size does not match signature '{name}': {len(sent)}!={len(expected)} "
                f"len({{{','.join(sorted(sent))}}}) != len({{{','.join(sorted(expected))}}}). "
                f"Sent extra: {{{','.join(sorted(sent - expected))}}}. "
                f"Missing but required: {{{','.join(sorted(expected - sent))}}}.")
        for key, array in inputs.items():
            dtype, dims = specs[key]
            if array_dtype(array) != dtype:
                raise invalid(f"input '{key}' of signature '{name}' must be {dtype.name}, "
                              f"got {array_dtype(array).name}")
            if dims is not None and (array.ndim != len(dims)
                                     or any(d not in (-1, n) for d, n in zip(dims, array.shape))):
                raise invalid(f"input '{key}' of signature '{name}' must have shape "
                              f"{[None if d == -1 else d for d in dims]}, got {list(array.shape)}")
            if self.max_batch_size and array.ndim and array.shape[0] > self.max_batch_size:
                raise invalid(f"batch size {array.shape[0]} of input '{key}' is over the maximum "
                              f"{self.max_batch_size} this server allows")

    def close(self) -> None:
        self._session.close()
