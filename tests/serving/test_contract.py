"""One client suite, run against our server and (when installed) real TF Serving: the client and
the server must keep TF Serving's contract, answers and errors alike."""
import json
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
import tensorflow as tf
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tensorflow_serving.apis import classification_pb2, predict_pb2, prediction_service_pb2_grpc

from mtrec.serving.client import ServingClient, to_example
from mtrec.serving.signatures import RANK, SERVING_DEFAULT, SERVING_RAW
from tests.conftest import SMALL_RUN
from tests.serving.conftest import MODEL, user_rows

TASKS = {"click", "like", "purchase", "dwell", "review_positive"}
pytestmark = SMALL_RUN


@pytest.fixture(scope="module")
def client(endpoint):
    with ServingClient(endpoint.grpc, MODEL, timeout=10) as c:
        yield c


@pytest.fixture(scope="module")
def rows(pushed):
    return user_rows(pushed[2], 5)


def _code(call) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as raised:
        call()
    return raised.value.code(), raised.value.details()


def test_predict_returns_a_score_per_task_and_row_and_both_signatures_agree(client, rows):
    raw = client.predict(rows)
    assert set(raw) == TASKS
    for task in ("click", "like", "purchase"):
        assert raw[task].shape == (5,) and np.all((raw[task] > 0) & (raw[task] < 1)), raw[task]
    assert np.all(raw["dwell"] >= 0)
    examples = client.predict_examples(rows)
    for task in TASKS:
        np.testing.assert_allclose(examples[task], raw[task], rtol=1e-5)
    single = client.predict(rows[0])  # one row, given as a plain dict
    assert single["click"].shape == (1,) and single["click"][0] == pytest.approx(raw["click"][0], rel=1e-5)


def test_output_filter_and_metadata_and_status(client, rows, pushed):
    assert set(client.predict(rows, output_filter=["like"])) == {"like"}
    signatures = client.metadata()
    assert {SERVING_DEFAULT, SERVING_RAW, RANK} <= set(signatures)
    assert set(signatures[SERVING_DEFAULT].inputs) == {"examples"}
    assert set(signatures[SERVING_RAW].outputs) == TASKS
    assert client.status() == [{"version": pushed[1], "state": "AVAILABLE", "error": ""}]


def test_recommend_ranks_by_the_blend_and_the_serving_graph_computes_the_same_blend(client, pushed):
    rows = user_rows(pushed[2], 40)
    context = {k: rows[0][k] for k in ("user_id", "age_bucket", "region", "user_tenure_days", "device", "page",
                                       "hour", "position")}
    items = [{k: r[k] for k in ("item_id", "category", "price")} | {"title": "ignored"} for r in rows]
    weights = {"click": 1.0, "like": 0.5}
    local = client.recommend(context, items, weights, k=10)
    served = client.recommend(context, items, weights, k=10, server_side=True)
    assert len(local) == 10
    assert [r.score for r in local] == sorted((r.score for r in local), reverse=True)
    for r in local:
        assert r.score == pytest.approx(r.task_scores["click"] + 0.5 * r.task_scores["like"], rel=1e-5)
    assert [r.item["item_id"] for r in served] == [r.item["item_id"] for r in local]
    np.testing.assert_allclose([r.score for r in served], [r.score for r in local], rtol=1e-5)
    with pytest.raises(ValueError, match="ctr"):
        client.recommend(context, items, {"ctr": 1.0})


def test_bad_requests_get_tf_serving_status_codes_and_the_server_keeps_serving(endpoint, client, rows, pushed):
    good = client._typed(rows, SERVING_RAW)
    assert _code(lambda: ServingClient(endpoint.grpc, "nope").predict_tensors(good, SERVING_RAW))[0] == grpc.StatusCode.NOT_FOUND
    assert _code(lambda: ServingClient(endpoint.grpc, MODEL, version=7).predict_tensors(good, SERVING_RAW))[0] == grpc.StatusCode.NOT_FOUND
    assert _code(lambda: ServingClient(endpoint.grpc, MODEL, label="gold").predict_tensors(good, SERVING_RAW))[0] == grpc.StatusCode.INVALID_ARGUMENT
    code, message = _code(lambda: client.predict_tensors(good, "no_such_signature"))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "no_such_signature" in message
    missing = {k: v for k, v in good.items() if k != "price"}
    code, message = _code(lambda: client.predict_tensors(missing, SERVING_RAW))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "price" in message
    code, message = _code(lambda: client.predict_tensors({**good, "colour": good["device"]}, SERVING_RAW))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "colour" in message
    code, message = _code(lambda: client.predict_tensors({**good, "price": good["device"]}, SERVING_RAW))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    code, message = _code(lambda: client.predict_tensors({**good, "price": good["price"].reshape(-1, 1)}, SERVING_RAW))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    code, message = _code(lambda: client.predict_tensors({"examples": np.array([b"\x07not an example"], dtype=object)}))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    code, _ = _code(lambda: client.predict_tensors(good, SERVING_RAW, output_filter=["ctr"]))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    if endpoint.kind == "local":  # our server's configured --max-batch-size (1024)
        big = {k: np.repeat(v, 205) for k, v in good.items()}
        code, message = _code(lambda: client.predict_tensors(big, SERVING_RAW))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "1025" in message and "1024" in message
    assert set(client.predict(rows)) == TASKS  # still serving


def test_classify_on_a_predict_signature_is_refused_with_the_reason(endpoint, client, rows):
    stub = prediction_service_pb2_grpc.PredictionServiceStub(client.channel)
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = MODEL
    request.input.example_list.examples.append(to_example(rows[0], client.input_dtypes(SERVING_RAW)))
    code, message = _code(lambda: stub.Classify(request, timeout=10))
    assert code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION)
    assert "classif" in message.lower()


def test_health_service_reports_serving(endpoint):
    if endpoint.kind != "local":
        pytest.skip("tensorflow_model_server has no grpc.health.v1 service")
    stub = health_pb2_grpc.HealthStub(grpc.insecure_channel(endpoint.grpc))
    for service in ("", "tensorflow.serving.PredictionService"):
        response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert response.status == health_pb2.HealthCheckResponse.SERVING


def _rest(endpoint, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    try:
        with urllib.request.urlopen(urllib.request.Request(endpoint.rest + path, data=data), timeout=30) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def test_rest_api_matches_grpc_in_row_and_column_formats(endpoint, client, rows, pushed):
    grpc_scores = client.predict(rows)
    status, body = _rest(endpoint, f"/v1/models/{MODEL}:predict", {"signature_name": SERVING_RAW, "instances": rows})
    assert status == 200, body
    np.testing.assert_allclose([p["click"][0] for p in body["predictions"]], grpc_scores["click"], rtol=1e-5)
    columns = {k: [r[k] for r in rows] for k in rows[0]}
    status, body = _rest(endpoint, f"/v1/models/{MODEL}/versions/{pushed[1]}:predict",
                         {"signature_name": SERVING_RAW, "inputs": columns})
    assert status == 200, body
    np.testing.assert_allclose(np.array(body["outputs"]["like"]).reshape(-1), grpc_scores["like"], rtol=1e-5)
    status, body = _rest(endpoint, f"/v1/models/{MODEL}")
    assert status == 200 and body["model_version_status"][0]["state"] == "AVAILABLE"
    assert body["model_version_status"][0]["version"] == str(pushed[1])
    status, body = _rest(endpoint, f"/v1/models/{MODEL}/metadata")
    assert status == 200 and SERVING_RAW in body["metadata"]["signature_def"]["signature_def"]
    status, body = _rest(endpoint, f"/v1/models/{MODEL}:predict", {"signature_name": SERVING_RAW,
                                                                   "instances": [{"user_id": "u1"}]})
    assert status == 400 and "price" in body["error"]
    status, body = _rest(endpoint, "/v1/models/nope:predict", {"instances": [1]})
    assert status == 404 and "nope" in body["error"]
