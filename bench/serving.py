"""Serving latency and throughput: gRPC and REST against `mtrec serve`, beside the in-process call.

    python bench/serving.py --model-base-path work/serving/mtrec --out bench/results/serving.json

Starts `mtrec serve` as its own process on 127.0.0.1 (free ports), then, in one run, measures
p50/p99 latency at batch 1 and 100 for: the in-process SavedModel call (TF2 `tf.saved_model.load`
signature, and the TF Session callable the server runs), gRPC Predict and REST :predict; gRPC
GetModelStatus (a round trip with no model call: transport + handler); and the throughput of 8
concurrent gRPC clients at batch 1, against it and against a second server with --enable-batching.
Then the issue's method, from a client process of its own (`--client`, a plain TF Serving API
stub): batch-1 Predict of the model's own warm-up requests, 500 timed calls after 50, and 8
client threads for `--seconds`; against `mtrec serve`, against it with --enable-batching and with
--inter-op-threads -1 (each request's ops in the gRPC worker's thread), and against a gRPC server
of the same make whose Predict answers a ready response (`--empty-server`: the transport's floor).
In the bench process, the same warm-up requests through the handler's parts: proto to arrays and
back, the Session call, and the whole `api.predict`. Writes JSON and a latency chart (PNG beside
it); the servers stop at the end.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import psutil  # noqa: E402
import tensorflow as tf  # noqa: E402
import grpc  # noqa: E402
from tensorflow_serving.apis import get_model_status_pb2, predict_pb2, prediction_service_pb2_grpc  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from bench import machine  # noqa: E402
from mtrec.config import ServingConfig  # noqa: E402
from mtrec.serving.client import ServingClient, to_example  # noqa: E402
from mtrec.serving.servable import Servable, session_config  # noqa: E402
from mtrec.serving.signatures import SERVING_DEFAULT, SERVING_RAW  # noqa: E402

GOALS = {"grpc_batch1_p99_ms": 1.5, "grpc_overhead_ms": 1.0, "throughput_8_clients_rps": 1500}


def percentiles(call, repeats: int, warmup: int = 30) -> dict:
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    ms = np.array(times) * 1e3
    return {"p50_ms": round(float(np.percentile(ms, 50)), 3), "p99_ms": round(float(np.percentile(ms, 99)), 3),
            "mean_ms": round(float(ms.mean()), 3), "n": repeats}


def rows(path: str, count: int) -> list:
    """Raw feature rows taken from the model's own warm-up records (real eval examples)."""
    out = []
    for request in warmup_requests(path):
        example = tf.train.Example.FromString(tf.make_ndarray(request.inputs["examples"])[0])
        row = {}
        for name, feature in example.features.feature.items():
            kind = feature.WhichOneof("kind")
            values = getattr(feature, kind).value
            if values:
                row[name] = values[0].decode() if kind == "bytes_list" else values[0]
        out.append(row)
    while len(out) < count:
        out += out
    return out[:count]


def warmup_requests(path: str) -> list:
    """The PredictRequests of a model version's warm-up file (what TF Serving replays at load)."""
    from tensorflow_serving.apis import prediction_log_pb2

    return [prediction_log_pb2.PredictionLog.FromString(record).predict_log.request
            for record in tf.compat.v1.io.tf_record_iterator(os.path.join(path, "assets.extra",
                                                                         "tf_serving_warmup_requests"))]


def client_main(args) -> None:
    """`--client`: the independent client. Prints {"latency": ..., "throughput": ...} as JSON."""
    requests = warmup_requests(args.client_model_dir)
    for request in requests:
        request.model_spec.name = args.model_name
    with grpc.insecure_channel(args.client) as channel:
        predict = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict
        calls = iter(range(1 << 30))
        latency = percentiles(lambda: predict(requests[next(calls) % len(requests)], timeout=30), args.calls,
                              warmup=50)
    print(json.dumps({"latency": latency,
                      "throughput": throughput(args.client, requests, 8, args.seconds, args.server_pid)}))


def independent_client(target: str, model_dir: str, name: str, calls: int, seconds: float, server_pid: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--client", target, "--client-model-dir", model_dir,
                          "--model-name", name, "--calls", str(calls), "--seconds", str(seconds),
                          "--server-pid", str(server_pid)],
                         check=True, capture_output=True, text=True, timeout=600).stdout
    return json.loads(out.strip().splitlines()[-1])


def cpu_seconds(pid: int = 0) -> float:
    """CPU time (user + system, every thread) of process `pid`, or of this process (0)."""
    times = psutil.Process(pid or None).cpu_times()
    return times.user + times.system


def empty_server_main(port: int, workers: int) -> None:
    """`--empty-server`: a gRPC server made as `mtrec serve` makes its own, whose Predict answers
    a ready response of the model's shape (5 task scores, batch 1): what gRPC itself costs."""
    from concurrent import futures

    response = predict_pb2.PredictResponse()
    for task in ("click", "like", "purchase", "dwell", "review_positive"):
        response.outputs[task].CopyFrom(tf.make_tensor_proto(np.zeros((1, 1), np.float32)))

    class Empty(prediction_service_pb2_grpc.PredictionServiceServicer):
        def Predict(self, request, context):
            return response

    server = grpc.server(futures.ThreadPoolExecutor(workers), options=[("grpc.so_reuseport", 0)])
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Empty(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    server.wait_for_termination()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(base: str, name: str, *flags: str):
    ports = [free_port(), free_port()]
    mtrec = os.path.join(os.path.dirname(sys.executable), "mtrec")
    process = subprocess.Popen([mtrec, "serve", "--model-base-path", base, "--model-name", name,
                                "--port", str(ports[0]), "--rest-port", str(ports[1]), *flags],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = ServingClient(f"127.0.0.1:{ports[0]}", name, timeout=30)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if client.status()[0]["state"] == "AVAILABLE":
                return process, client, ports[1]
        except Exception:  # noqa: BLE001 - not up yet
            time.sleep(0.3)
    process.kill()
    raise TimeoutError("mtrec serve did not come up in 120 s")


def throughput(target: str, requests, clients: int, seconds: float, server_pid: int = 0) -> dict:
    """Requests/s of `clients` threads, each with its own channel, sending prebuilt requests (one,
    or a list they take turns through). With the server's `server_pid`, also the CPU
    milliseconds the server and this client process spent per request in the measured window: on
    cores they share, 1,000 ms per core over their sum is the most requests/s the pair can make."""
    requests = requests if isinstance(requests, list) else [requests]
    stop, counts, failures = threading.Event(), [0] * clients, []

    def work(i):
        with grpc.insecure_channel(target) as channel:
            predict = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict
            sent = i
            while not stop.is_set():
                try:
                    predict(requests[sent % len(requests)], timeout=30)
                    sent += 1
                    counts[i] += 1
                except grpc.RpcError as error:
                    failures.append(error.code().name)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    cpu = (cpu_seconds(), cpu_seconds(server_pid)) if server_pid else None
    start_counts, start = sum(counts), time.perf_counter()
    time.sleep(seconds)
    done, elapsed = sum(counts) - start_counts, time.perf_counter() - start
    if cpu:
        cpu = [(after - before) * 1e3 / max(done, 1) for before, after in zip(cpu, (cpu_seconds(), cpu_seconds(server_pid)))]
    stop.set()
    for t in threads:
        t.join()
    out = {"clients": clients, "seconds": round(elapsed, 2), "requests": done,
           "requests_per_s": round(done / elapsed, 1), "failed": len(failures)}
    if cpu:
        out.update(client_cpu_ms_per_request=round(cpu[0], 3), server_cpu_ms_per_request=round(cpu[1], 3),
                   cpu_ms_per_request=round(sum(cpu), 3))
    return out


def predict_request(name: str, signature: str, inputs) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name, request.model_spec.signature_name = name, signature
    for key, value in inputs.items():
        request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
    return request


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-base-path", default="work/serving/mtrec", help="the Pusher's model directory")
    parser.add_argument("--model-name", default="mtrec")
    parser.add_argument("--repeats", type=int, default=2000, help="timed calls per latency figure")
    parser.add_argument("--seconds", type=float, default=10.0, help="throughput measuring time")
    parser.add_argument("--calls", type=int, default=500, help="timed calls of the independent client")
    parser.add_argument("--out", default="bench/results/serving.json")
    parser.add_argument("--client", metavar="TARGET", help=argparse.SUPPRESS)  # the independent client's process
    parser.add_argument("--client-model-dir", help=argparse.SUPPRESS)
    parser.add_argument("--empty-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--server-pid", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.client:
        return client_main(args)
    server_options = ServingConfig()  # what `mtrec serve` runs with
    if args.empty_server:
        return empty_server_main(args.empty_server, server_options.grpc_workers)
    # The intra-op pool is one per process, sized by whichever comes first, a Session or TF2's eager
    # context: sized as the server's, or the in-process rows measure a Session twice as slow as its.
    tf.config.threading.set_intra_op_parallelism_threads(server_options.intra_op_threads)
    base = os.path.abspath(args.model_base_path)
    if not os.path.isdir(base):
        parser.error(f"{base} does not exist: run `make run` first (it pushes a model there)")
    version = max(int(v) for v in os.listdir(base) if v.isdigit())
    path = os.path.join(base, str(version))
    feature_rows = rows(path, 100)

    process, client, rest_port = start_server(base, args.model_name)
    try:
        raw_dtypes = client.input_dtypes(SERVING_RAW)
        batches = {size: {"raw": client._typed([{k: r[k] for k in raw_dtypes} for r in feature_rows[:size]], SERVING_RAW),
                          "examples": {"examples": np.array([to_example(r, raw_dtypes).SerializeToString()
                                                             for r in feature_rows[:size]], dtype=object)}}
                   for size in (1, 100)}
        loaded = tf.saved_model.load(path)
        servable = Servable(args.model_name, version, path, session_config(server_options))
        results = {"model": path, "machine": {**machine.describe(), "tensorflow": tf.__version__}, "latency": {}}
        status_request = get_model_status_pb2.GetModelStatusRequest()
        status_request.model_spec.name = args.model_name
        results["latency"]["grpc_status_round_trip"] = percentiles(
            lambda: client._models.GetModelStatus(status_request, timeout=10), args.repeats)
        for size, inputs in batches.items():
            for kind, signature in (("raw", SERVING_RAW), ("examples", SERVING_DEFAULT)):
                key = f"batch{size}_{kind}"
                tensors = {k: tf.constant(v) for k, v in inputs[kind].items()}
                fn = loaded.signatures[signature]
                results["latency"][f"{key}_in_process_tf2"] = percentiles(lambda: fn(**tensors), args.repeats)
                results["latency"][f"{key}_in_process_session"] = percentiles(
                    lambda: servable.run(signature, inputs[kind]), args.repeats)
                results["latency"][f"{key}_grpc"] = percentiles(
                    lambda: client.predict_tensors(inputs[kind], signature), args.repeats)
            body = json.dumps({"signature_name": SERVING_RAW,
                               "instances": [{k: r[k] for k in raw_dtypes} for r in feature_rows[:size]]}).encode()
            url = f"http://127.0.0.1:{rest_port}/v1/models/{args.model_name}:predict"
            results["latency"][f"batch{size}_raw_rest"] = percentiles(
                lambda: urllib.request.urlopen(urllib.request.Request(url, data=body), timeout=30).read(), args.repeats)
        requests = {kind: predict_request(args.model_name, signature, batches[1][kind])
                    for kind, signature in (("examples", SERVING_DEFAULT), ("raw", SERVING_RAW))}
        results["throughput"] = {f"batch1_{kind}_grpc": throughput(client.target, request, 8, args.seconds)
                                 for kind, request in requests.items()}
    finally:
        client.close()
        process.terminate()
        process.wait(timeout=60)

    # The same, against a server that merges concurrent requests (--enable-batching).
    process, client, _ = start_server(base, args.model_name, "--enable-batching")
    try:
        results["latency"]["batch1_examples_grpc_batching"] = percentiles(
            lambda: client.predict_tensors(batches[1]["examples"], SERVING_DEFAULT), args.repeats)
        for kind, request in requests.items():
            results["throughput"][f"batch1_{kind}_grpc_batching"] = throughput(client.target, request, 8, args.seconds)
    finally:
        client.close()
        process.terminate()
        process.wait(timeout=60)

    results["independent_client"] = issue_method(args, base, path, servable)
    servable.close()
    latency = results["latency"]
    best = min(("examples", "raw"), key=lambda k: latency[f"batch1_{k}_grpc"]["p99_ms"])
    results["summary"] = {
        "signature": SERVING_DEFAULT if best == "examples" else SERVING_RAW,
        "grpc_batch1_p99_ms": latency[f"batch1_{best}_grpc"]["p99_ms"],
        "grpc_overhead_ms": round(latency[f"batch1_{best}_grpc"]["p50_ms"]
                                  - latency[f"batch1_{best}_in_process_tf2"]["p50_ms"], 3),
        "grpc_overhead_over_session_ms": round(latency[f"batch1_{best}_grpc"]["p50_ms"]
                                               - latency[f"batch1_{best}_in_process_session"]["p50_ms"], 3),
        "throughput_8_clients_rps": max(t["requests_per_s"] for t in results["throughput"].values()),
        "goals": GOALS}
    served = {k: results["independent_client"][k] for k in ("mtrec_serve", "mtrec_serve_batching")}
    results["summary"]["independent_client"] = {
        "batch1_p99_ms": min(v["latency"]["p99_ms"] for v in served.values()),
        "throughput_8_clients_rps": max(v["throughput"]["requests_per_s"] for v in served.values()),
        "failed": sum(v["throughput"]["failed"] for v in served.values()),
        "goals": {"batch1_p99_ms": GOALS["grpc_batch1_p99_ms"],
                  "throughput_8_clients_rps": GOALS["throughput_8_clients_rps"]},
        # What the client and server processes spent per request, and the requests/s that CPU
        # allows on this machine's cores even if they were never idle: the ceiling of each server.
        "cpu_bound_rps": {key: round(1e3 * os.cpu_count() / v["throughput"]["cpu_ms_per_request"])
                          for key, v in results["independent_client"].items()
                          if "cpu_ms_per_request" in v.get("throughput", {})}}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)
    plot(results, os.path.splitext(args.out)[0] + ".png")
    print(json.dumps(results, indent=1))
    return results


def issue_method(args, base: str, path: str, servable: Servable) -> dict:
    """The warm-up requests from a client process of its own, against `mtrec serve` (as it comes,
    with batching, and running each request's ops in the gRPC worker's thread) and an empty
    handler; and in this process, the handler's parts on `servable` (the version at `path`,
    loaded as the server loads it)."""
    out = {}
    for key, flags in (("mtrec_serve", ()), ("mtrec_serve_batching", ("--enable-batching",)),
                       ("mtrec_serve_caller_thread", ("--inter-op-threads", "-1"))):
        process, client, _ = start_server(base, args.model_name, *flags)
        try:
            out[key] = independent_client(client.target, path, args.model_name, args.calls, args.seconds, process.pid)
        finally:
            client.close()
            process.terminate()
            process.wait(timeout=60)
    port = free_port()
    process = subprocess.Popen([sys.executable, __file__, "--empty-server", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=60)
        out["empty_handler"] = independent_client(f"127.0.0.1:{port}", path, args.model_name, args.calls, args.seconds,
                                                  process.pid)
    finally:
        process.terminate()
        process.wait(timeout=60)

    from mtrec.serving import api

    requests = warmup_requests(path)
    calls = iter(range(1 << 30))
    request = lambda: requests[next(calls) % len(requests)]  # noqa: E731
    arrays = [{k: api.to_array(k, v) for k, v in r.inputs.items()} for r in requests]
    name, aliases = servable.check(requests[0].model_spec.signature_name, arrays[0])
    outputs = servable.execute(name, arrays[0], aliases)

    def convert():
        r = request()
        {k: api.to_array(k, v) for k, v in r.inputs.items()}
        response = predict_pb2.PredictResponse()
        for alias, value in outputs.items():
            api.to_proto(value, response.outputs[alias])
        response.SerializeToString()

    out["in_process"] = {
        "session_call": percentiles(lambda: servable.execute(name, arrays[next(calls) % len(arrays)], aliases),
                                    args.calls, warmup=50),
        "proto_conversion": percentiles(convert, args.calls, warmup=50),
        "api_predict": percentiles(lambda: api.predict(servable, request()), args.calls, warmup=50)}
    return out


def plot(results: dict, path: str) -> None:
    """p50 and p99 of every measured path, side by side: where the milliseconds go."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = dict(results["latency"])
    for key, value in results["independent_client"].items():
        if key == "in_process":
            rows.update({f"handler part: {part}": v for part, v in value.items()})
        else:
            rows[f"independent client: {key}"] = value["latency"]
    names = list(rows)
    p50 = [rows[n]["p50_ms"] for n in names]
    p99 = [rows[n]["p99_ms"] for n in names]
    fig, ax = plt.subplots(figsize=(9, 0.35 * len(names) + 1.5))
    y = np.arange(len(names))
    ax.barh(y - 0.2, p50, 0.4, label="p50")
    ax.barh(y + 0.2, p99, 0.4, label="p99")
    ax.axvline(GOALS["grpc_batch1_p99_ms"], color="grey", linestyle="--", label="goal: batch-1 gRPC p99")
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set_xlabel("milliseconds")
    rps = results["summary"]["throughput_8_clients_rps"]
    ax.set_title(f"mtrec serve latency (8 clients: {rps:.0f} requests/s)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
