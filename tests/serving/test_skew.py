"""Serving skew: `mtrec serve` logs requests as TF Serving's PredictionLog records, and `mtrec skew`
compares them with the training data, finding a shifted feature and not the others."""
import glob
import json
import os

import numpy as np
import tensorflow as tf

from mtrec import cli
from mtrec.serving.client import ServingClient
from mtrec.serving.request_log import RequestLogger
from mtrec.serving.skew import read_requests
from tests.conftest import SMALL_RUN
from tests.serving.conftest import MODEL, start_local


def _eval_examples(small_run):
    """The small run's eval examples, serialized, with device as logged and as shifted to tablet."""
    split = small_run.summary["dead_letter"]["uri"].replace("dead_letter", "examples")
    files = glob.glob(os.path.join(split, "Split-eval", "*.gz"))
    raw = [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]
    shifted = []
    for record in raw:
        example = tf.train.Example.FromString(record)
        example.features.feature["device"].bytes_list.value[:] = [b"tablet"]
        shifted.append(example.SerializeToString())
    return raw, shifted


def _serve_and_log(pushed, records, log_dir):
    base, _, _ = pushed
    server = start_local(base, request_log_dir=str(log_dir), request_log_rate=1.0)
    try:
        client = ServingClient(f"127.0.0.1:{server.grpc_port}", MODEL)
        for start in range(0, len(records), 50):
            client.predict_tensors({"examples": np.array(records[start:start + 50], dtype=object)})
    finally:
        server.stop()


def _skew(small_run, log_dir, capsys):
    code = cli.main(["skew", "--requests", str(log_dir), "--work-dir", str(small_run.work_dir)])
    out = capsys.readouterr().out.splitlines()
    report = json.loads(out[-1])
    distances = {line.split()[0]: float(line.split()[2]) for line in out[:-1]}
    return code, report, distances


@SMALL_RUN
def test_logged_requests_show_a_shifted_feature_as_skewed_and_the_others_not(small_run, pushed, tmp_path, capsys):
    raw, shifted = _eval_examples(small_run)
    assert len(raw) > 300
    _serve_and_log(pushed, raw, tmp_path / "as_logged")
    _serve_and_log(pushed, shifted, tmp_path / "shifted")
    frame = read_requests(str(tmp_path / "as_logged"))
    assert len(frame) == len(raw) and {"user_id", "device", "price"} <= set(frame.columns)
    code, report, same = _skew(small_run, tmp_path / "as_logged", capsys)
    assert code == 0 and report["skewed"] == [] and report["requests_examples"] == len(raw)
    code, report, moved = _skew(small_run, tmp_path / "shifted", capsys)
    assert code == 1 and report["skewed"] == ["device"]
    assert moved["device"] > 0.5 > same["device"]
    assert {k: v for k, v in moved.items() if k != "device"} == {k: v for k, v in same.items() if k != "device"}


def test_the_request_logger_samples_at_its_rate(tmp_path):
    from tensorflow_serving.apis import predict_pb2

    logger = RequestLogger(str(tmp_path), rate=0.25, seed=1)
    request = predict_pb2.PredictRequest()
    request.inputs["device"].CopyFrom(tf.make_tensor_proto(np.array([b"mobile"], dtype=object)))
    for _ in range(400):
        logger.predict(request, predict_pb2.PredictResponse())
    logger.close()
    assert 70 <= logger.logged <= 130
    assert len(read_requests(str(tmp_path))) == logger.logged
