"""Local-server behaviour beyond the shared contract: warm-up replay, version labels and config
reloads (roll forward, roll back), Classify/Regress/MultiInference on signatures that allow them,
the deployment files, and the CLI."""
import json
import os
import shutil
import subprocess
import sys
import threading

import grpc
import numpy as np
import pytest
import tensorflow as tf
import yaml
from google.protobuf import text_format
from tensorflow_serving.apis import (classification_pb2, inference_pb2, prediction_log_pb2,
                                     prediction_service_pb2_grpc, regression_pb2)
from tensorflow_serving.config import model_server_config_pb2

from mtrec.components.serving_warmup import serving_problem
from mtrec.config import ServingConfig
from mtrec.serving.api import WARMUP_FILE
from mtrec.serving.client import ServingClient, to_example
from mtrec.serving.manager import model_server_config
from mtrec.serving.server import ModelServer
from mtrec.serving.signatures import SERVING_DEFAULT
from tests.conftest import SMALL_RUN
from tests.serving.conftest import MODEL, copy_model, start_local, user_rows

pytestmark = SMALL_RUN
ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
DEPLOY = os.path.join(ROOT, "serving", "deploy")
MTREC = os.path.join(os.path.dirname(sys.executable), "mtrec")


def test_pushed_model_carries_warmup_records_from_eval_examples_and_the_server_replays_them(pushed):
    base, version, _ = pushed
    records = list(tf.compat.v1.io.tf_record_iterator(os.path.join(base, str(version), WARMUP_FILE)))
    assert len(records) == 100
    logs = [prediction_log_pb2.PredictionLog.FromString(r) for r in records]
    assert {log.WhichOneof("log_type") for log in logs} == {"predict_log"}
    request = logs[0].predict_log.request
    assert request.model_spec.signature_name == SERVING_DEFAULT and list(request.inputs) == ["examples"]
    example = tf.train.Example.FromString(tf.make_ndarray(request.inputs["examples"])[0])
    assert {"user_id", "item_id", "click"} <= set(example.features.feature)  # a real eval example
    events = []
    server = start_local(base, events)
    server.stop()
    assert f"model {MODEL} version {version} available (100 warm-up requests replayed)" in events


def test_the_serving_check_refuses_a_model_a_server_could_not_load(pushed, tmp_path):
    base, version, _ = pushed
    requests = [prediction_log_pb2.PredictionLog.FromString(r).predict_log.request
                for r in tf.compat.v1.io.tf_record_iterator(os.path.join(base, str(version), WARMUP_FILE))][:5]
    assert serving_problem(MODEL, os.path.join(base, str(version)), requests) == ""
    broken = copy_model(pushed, tmp_path)
    index = os.path.join(broken, str(version), "variables", "variables.index")
    with open(index, "wb") as f:
        f.write(b"truncated")
    problem = serving_problem(MODEL, os.path.join(broken, str(version)), requests)
    assert "Error" in problem, problem  # e.g. "DataLossError: ..." naming what failed
    assert serving_problem(MODEL, os.path.join(base, str(version)), []) == "no eval examples to build warm-up requests from"


def test_labels_roll_forward_and_back_through_config_reloads(pushed, tmp_path):
    base = copy_model(pushed, tmp_path)
    old, new = pushed[1], pushed[1] + 1
    shutil.copytree(os.path.join(base, str(old)), os.path.join(base, str(new)))
    server = start_local(base)
    try:
        rows = user_rows(pushed[2], 1)
        with ServingClient(f"127.0.0.1:{server.grpc_port}", MODEL) as admin:
            assert [s["version"] for s in admin.status() if s["state"] == "AVAILABLE"] == [new]
            admin.reload_config(model_server_config(MODEL, base, {"stable": old, "canary": new}, versions=[old, new]))
            assert sorted(s["version"] for s in admin.status() if s["state"] == "AVAILABLE") == [old, new]
            for label, version in (("stable", old), ("canary", new)):
                with ServingClient(f"127.0.0.1:{server.grpc_port}", MODEL, label=label) as client:
                    assert client.status()[0]["version"] == version
                    assert client.predict(rows)["click"].shape == (1,)
            # roll back: stable stays on the old version, the new one is retired
            admin.reload_config(model_server_config(MODEL, base, {"stable": old}, versions=[old]))
            assert [s["version"] for s in admin.status() if s["state"] == "AVAILABLE"] == [old]
            with pytest.raises(grpc.RpcError) as refused:  # a label must name a loaded version
                admin.reload_config(model_server_config(MODEL, base, {"stable": 12345}, versions=[old]))
            assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "12345" in refused.value.details()
            with ServingClient(f"127.0.0.1:{server.grpc_port}", MODEL, label="stable") as client:
                assert client.predict(rows)["click"].shape == (1,)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def classify_regress_model(tmp_path_factory):
    """A small real SavedModel with TF1 classify and regress signatures (mtrec exports predict ones)."""
    base = tmp_path_factory.mktemp("tf1") / "scorer"
    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.Session(graph=graph) as session:
        serialized = tf.compat.v1.placeholder(tf.string, [None], name="tf_example")
        x = tf.io.parse_example(serialized, {"x": tf.io.FixedLenFeature([1], tf.float32)})["x"]
        score = tf.sigmoid(2.0 * x)
        scores = tf.concat([1 - score, score], axis=1)
        classes = tf.tile(tf.constant([["no", "yes"]]), [tf.shape(x)[0], 1])
        utils = tf.compat.v1.saved_model.signature_def_utils
        builder = tf.compat.v1.saved_model.Builder(str(base / "1"))
        builder.add_meta_graph_and_variables(session, ["serve"], signature_def_map={
            "classify": utils.classification_signature_def(serialized, classes, scores),
            "regress": utils.regression_signature_def(serialized, 3.0 * x)})
        builder.save()
    return str(base)


def test_classify_regress_and_multi_inference_where_the_signature_allows(classify_regress_model):
    server = ModelServer(model_server_config("scorer", classify_regress_model),
                         ServingConfig(grpc_port=0, rest_port=0)).start()
    try:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}"))
        examples = [to_example({"x": [v]}, {"x": tf.float32}) for v in (0.0, 1.0)]
        request = classification_pb2.ClassificationRequest()
        request.model_spec.name, request.model_spec.signature_name = "scorer", "classify"
        request.input.example_list.examples.extend(examples)
        result = stub.Classify(request, timeout=10).result
        assert [[c.label for c in r.classes] for r in result.classifications] == [["no", "yes"]] * 2
        assert result.classifications[1].classes[1].score == pytest.approx(1 / (1 + np.exp(-2.0)), rel=1e-5)
        request = regression_pb2.RegressionRequest()
        request.model_spec.name, request.model_spec.signature_name = "scorer", "regress"
        request.input.example_list_with_context.context.CopyFrom(to_example({"x": [1.0]}, {}))
        request.input.example_list_with_context.examples.extend([tf.train.Example()] * 3)
        assert [r.value for r in stub.Regress(request, timeout=10).result.regressions] == [3.0] * 3
        multi = inference_pb2.MultiInferenceRequest()
        multi.input.example_list.examples.extend(examples)
        for signature, method in (("classify", "tensorflow/serving/classify"), ("regress", "tensorflow/serving/regress")):
            multi.tasks.add(method_name=method).model_spec.CopyFrom(request.model_spec)
            multi.tasks[-1].model_spec.signature_name = signature
        results = stub.MultiInference(multi, timeout=10).results
        assert [r.regression_result.regressions[1].value for r in results[1:]] == [3.0]
        assert len(results[0].classification_result.classifications) == 2
        request.model_spec.signature_name = "classify"  # Regress on a classification signature
        with pytest.raises(grpc.RpcError) as refused:
            stub.Regress(request, timeout=10)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "regress" in refused.value.details()
    finally:
        server.stop()


def test_deployment_files_are_valid_and_pin_our_tensorflow_version():
    config = text_format.Parse(open(os.path.join(DEPLOY, "models.config")).read(),
                               model_server_config_pb2.ModelServerConfig())
    assert [m.name for m in config.model_config_list.config] == [MODEL]
    compose = yaml.safe_load(open(os.path.join(DEPLOY, "docker-compose.yaml")))
    service = compose["services"]["tfserving"]
    serving_image = f"tensorflow/serving:{'.'.join(tf.__version__.split('.')[:2])}."  # same TF minor version
    assert service["image"].startswith(serving_image)
    assert all(p.startswith("127.0.0.1:") for p in service["ports"])
    for flag in service["command"]:
        if flag.startswith(("--model_config_file=", "--batching_parameters_file=", "--monitoring_config_file=")):
            assert os.path.exists(os.path.join(DEPLOY, os.path.basename(flag.split("=", 1)[1]))), flag
    documents = list(yaml.safe_load_all(open(os.path.join(DEPLOY, "k8s", "tfserving.yaml"))))
    assert [d["kind"] for d in documents] == ["ConfigMap", "Deployment", "Service"]
    container = documents[1]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == service["image"]
    text_format.Parse(documents[0]["data"]["models.config"], model_server_config_pb2.ModelServerConfig())
    kserve = yaml.safe_load(open(os.path.join(DEPLOY, "kserve.yaml")))
    assert kserve["kind"] == "InferenceService"
    assert kserve["spec"]["predictor"]["model"]["modelFormat"]["name"] == "tensorflow"
    assert service["image"].endswith(kserve["spec"]["predictor"]["model"]["runtimeVersion"])


def test_query_and_recommend_commands(pushed):
    base, version, logs = pushed
    server = start_local(base)
    try:
        target = f"127.0.0.1:{server.grpc_port}"
        row = user_rows(logs, 1)[0]
        result = subprocess.run([MTREC, "query", "--target", target, "--json", json.dumps(row)],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        assert set(json.loads(result.stdout.strip().splitlines()[-1])) == {"click", "like", "purchase", "dwell", "review_positive"}
        bad = subprocess.run([MTREC, "query", "--target", target, "--json", '{"user_id": "u1"}'],
                             capture_output=True, text=True, timeout=120)
        assert bad.returncode == 2 and "INVALID_ARGUMENT" in bad.stderr and "price" in bad.stderr
        context = {k: v for k, v in row.items() if k not in ("item_id", "category", "price")}
        result = subprocess.run([MTREC, "recommend", "--target", target, "--user-json", json.dumps(context),
                                 "--items", str(logs / "items.jsonl"), "--weights", "click=1,like=0.5", "-k", "3"],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        lines = result.stdout.strip().splitlines()
        assert lines[-4].split()[:3] == ["rank", "item_id", "score"] and len(lines[-3:]) == 3
    finally:
        server.stop()


def test_batching_merges_concurrent_requests_without_changing_answers_or_sharing_errors(pushed):
    base, _, logs = pushed
    rows = user_rows(logs, 16)
    plain = start_local(base)
    try:
        with ServingClient(f"127.0.0.1:{plain.grpc_port}", MODEL) as client:
            expected = [client.predict(row)["click"][0] for row in rows]
    finally:
        plain.stop()
    batched = start_local(base, enable_batching=True)
    answers, errors = {}, []
    try:
        def send(i):
            # A generous deadline: the first merged batch traces a new shape on 2 busy cores
            # (CI saw it take over the client's 5 s once); this test is about answers, not latency.
            with ServingClient(f"127.0.0.1:{batched.grpc_port}", MODEL, timeout=60.0) as client:
                for _ in range(30):
                    answers.setdefault(i, []).append(float(client.predict(rows[i])["click"][0]))
                    try:  # a bad request in the same stream gets its own error only
                        client.predict_tensors({"examples": np.array([b"\x07broken"], dtype=object)})
                    except grpc.RpcError as error:
                        errors.append(error.code())

        threads = [threading.Thread(target=send, args=(i,)) for i in range(len(rows))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        merged = batched.batcher.tasks - batched.batcher.batches
    finally:
        batched.stop()
    for i, value in enumerate(expected):
        # the same answer whatever the batch it shared: float sums may differ in the last bits only
        assert len(answers[i]) == 30 and max(abs(a - value) for a in answers[i]) < 1e-6, (i, answers[i], value)
    assert errors == [grpc.StatusCode.INVALID_ARGUMENT] * (30 * len(rows))
    assert merged > 0  # some requests shared a session call


def test_ops_run_in_the_calling_thread_with_the_same_answers(pushed):
    """`inter_op_threads=-1` (`mtrec serve --inter-op-threads -1`): concurrent requests each run in
    their own gRPC worker and get the answers of the default thread pool."""
    base, _, logs = pushed
    rows = user_rows(logs, 8)
    answers = {}
    for threads in (2, -1):
        server = start_local(base, inter_op_threads=threads)
        try:
            def send(i, out):
                with ServingClient(f"127.0.0.1:{server.grpc_port}", MODEL, timeout=60.0) as client:
                    out[i] = [float(client.predict(rows[i])["click"][0]) for _ in range(5)]

            out = {}
            workers = [threading.Thread(target=send, args=(i, out)) for i in range(len(rows))]
            for t in workers:
                t.start()
            for t in workers:
                t.join(timeout=120)
            answers[threads] = out
        finally:
            server.stop()
    assert sorted(answers[-1]) == list(range(len(rows)))
    for i in range(len(rows)):
        assert max(abs(a - answers[2][i][0]) for a in answers[-1][i] + answers[2][i]) < 1e-6, (i, answers)
    with pytest.raises(ValueError, match="inter_op_threads"):
        ServingConfig(inter_op_threads=-2)


def _self_signed(directory):
    """A certificate for 127.0.0.1 and its key, as PEM files."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_file), str(key_file)


def test_tls_and_the_maximum_message_size(pushed, tmp_path):
    base, _, logs = pushed
    cert, key = _self_signed(tmp_path)
    server = start_local(base, tls_cert_file=cert, tls_key_file=key, max_message_bytes=64 * 1024)
    try:
        target = f"127.0.0.1:{server.grpc_port}"
        rows = user_rows(logs, 2)
        with ServingClient(target, MODEL, root_certificates=open(cert, "rb").read()) as client:
            assert client.predict(rows)["click"].shape == (2,)
            huge = {"examples": np.array([b"x" * (100 * 1024)], dtype=object)}
            with pytest.raises(grpc.RpcError) as refused:
                client.predict_tensors(huge)
            assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert client.predict(rows)["click"].shape == (2,)  # still serving
        with ServingClient(target, MODEL, timeout=3, retries=1) as plaintext:  # no TLS: no answer
            with pytest.raises(grpc.RpcError):
                plaintext.predict(rows)
    finally:
        server.stop()
